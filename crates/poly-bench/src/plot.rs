//! Line plots for the sweeps (plotters, SVG backend: no fonts or native libraries needed).

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use poly_reproduce::plots::{COLORS, KeyTicks, Mark, legend_panel, with_legend_panel};
use std::path::Path;

/// A labelled series of `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

/// Axes of a [`line_plot`].
pub struct Axes<'a> {
    /// Plot title.
    pub title: &'a str,
    /// x-axis label.
    pub x: &'a str,
    /// y-axis label.
    pub y: &'a str,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

fn range(values: impl Iterator<Item = f64> + Clone, log: bool) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (1.0, 2.0);
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = 0.05 * (hi - lo).max(1e-12);
        (lo.min(0.0), hi + pad)
    }
}

/// The x range: the measured span with a margin on both sides (an x axis need not reach 0).
fn x_range(values: impl Iterator<Item = f64> + Clone, log: bool) -> (f64, f64) {
    let (lo, hi) = range(values.clone(), log);
    if log {
        return (lo, hi);
    }
    let lo = values.fold(f64::INFINITY, f64::min);
    let pad = 0.05 * (hi - lo).max(1.0);
    (lo - pad, hi)
}

/// The x ticks: exactly the measured x values (the n of a sweep, the thread counts, the sketch
/// sizes), so a reader reads each point's x off the axis.
fn x_ticks(series: &[Series]) -> Vec<f64> {
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

/// Whole numbers without decimals (n, threads, r); others with up to three significant digits
/// and no trailing zeros (0.25, 0.001, 1.5e-7).
fn tick_label(v: &f64) -> String {
    let v = *v;
    if v == 0.0 || (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// The picture; the legend panel takes its right [`poly_reproduce::plots::LEGEND_WIDTH`] pixels,
/// so a legend never covers data.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 560;

/// Draws `series` as lines with points, and `references` (an ideal, a bound) as dashed grey
/// lines without points, into an SVG at `path`; the legend sits beside the chart.
///
/// # Errors
/// A message when plotters fails to draw or write.
pub fn line_plot(
    path: &Path,
    axes: &Axes<'_>,
    series: &[Series],
    references: &[Series],
) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (chart_area, legend_area) = with_legend_panel(&root);
    let points = series
        .iter()
        .chain(references)
        .flat_map(|(_, p)| p.iter().copied());
    let (x0, x1) = x_range(points.clone().map(|p| p.0), axes.log_x);
    let (y0, y1) = range(points.map(|p| p.1), axes.log_y);
    let ticks = x_ticks(series);
    let mut builder = ChartBuilder::on(&chart_area);
    builder
        .caption(axes.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    // plotters types log and linear axes differently: one generic drawing routine per combination.
    match (axes.log_x, axes.log_y) {
        (true, true) => draw(
            builder
                .build_cartesian_2d(
                    KeyTicks(LogCoord::from((x0..x1).log_scale()), ticks),
                    (y0..y1).log_scale(),
                )
                .map_err(err)?,
            axes,
            series,
            references,
        )?,
        (true, false) => draw(
            builder
                .build_cartesian_2d(
                    KeyTicks(LogCoord::from((x0..x1).log_scale()), ticks),
                    y0..y1,
                )
                .map_err(err)?,
            axes,
            series,
            references,
        )?,
        (false, true) => draw(
            builder
                .build_cartesian_2d(
                    KeyTicks(plotters::coord::types::RangedCoordf64::from(x0..x1), ticks),
                    (y0..y1).log_scale(),
                )
                .map_err(err)?,
            axes,
            series,
            references,
        )?,
        (false, false) => draw(
            builder
                .build_cartesian_2d(
                    KeyTicks(plotters::coord::types::RangedCoordf64::from(x0..x1), ticks),
                    y0..y1,
                )
                .map_err(err)?,
            axes,
            series,
            references,
        )?,
    }
    let mut rows: Vec<(String, Mark)> = series
        .iter()
        .enumerate()
        .map(|(i, (label, _))| (label.clone(), Mark::LineAndDot(COLORS[i % COLORS.len()])))
        .collect();
    rows.extend(
        references
            .iter()
            .map(|(label, _)| (label.clone(), Mark::Dashed(REFERENCE))),
    );
    legend_panel(&legend_area, &rows)?;
    root.present().map_err(err)
}

/// The colour of reference lines.
const REFERENCE: RGBColor = RGBColor(110, 110, 110);

fn draw<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    axes: &Axes<'_>,
    series: &[Series],
    references: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .draw()
        .map_err(err)?;
    for (_, points) in references {
        chart
            .draw_series(DashedLineSeries::new(
                points.clone(),
                8,
                6,
                REFERENCE.stroke_width(2),
            ))
            .map_err(err)?;
    }
    for (i, (_, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// Least-squares slope of `log y` against `log x`: the exponent of a power law.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.ln(), y.ln())).collect();
    let n = logs.len() as f64;
    let (mx, my) = (
        logs.iter().map(|p| p.0).sum::<f64>() / n,
        logs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_power_law() {
        let quadratic: Vec<(f64, f64)> = (8..14)
            .map(|k| (2f64.powi(k), 3.0 * 4f64.powi(k)))
            .collect();
        assert!((log_log_slope(&quadratic).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(log_log_slope(&quadratic[..1]), None);
    }

    #[test]
    fn plots_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let axes = Axes {
            title: "t",
            x: "n",
            y: "s",
            log_x: true,
            log_y: true,
        };
        let ideal = [("ideal".into(), vec![(1.0, 1.0), (4.0, 4.0)])];
        line_plot(
            &path,
            &axes,
            &[("a".into(), vec![(1.0, 2.0), (4.0, 8.0)])],
            &ideal,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1)?.split('<').next())
            .map(str::trim)
            .collect();
        assert!(svg.contains("<svg") && svg.contains("<polyline"), "{svg}");
        assert!(
            texts.contains(&"a") && texts.contains(&"t") && texts.contains(&"ideal"),
            "{texts:?}"
        );
        // The x ticks are the measured x values, as whole numbers.
        assert!(texts.contains(&"1") && texts.contains(&"4"), "{texts:?}");
        assert!(!texts.iter().any(|t| t.ends_with(".0")), "{texts:?}");
        let labels: Vec<String> = [0.25, 0.001, 1.5e-7, 65536.0, 3.0]
            .iter()
            .map(tick_label)
            .collect();
        assert_eq!(labels, ["0.25", "0.001", "1.50e-7", "65536", "3"]);
    }
}
