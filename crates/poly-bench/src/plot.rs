//! Line plots for the sweeps (plotters, SVG backend: no fonts or native libraries needed).

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use poly_reproduce::plots::COLORS;
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

/// Draws `series` as lines with points into an SVG at `path`.
///
/// # Errors
/// A message when plotters fails to draw or write.
pub fn line_plot(path: &Path, axes: &Axes<'_>, series: &[Series]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let points = series.iter().flat_map(|(_, p)| p.iter().copied());
    let (x0, x1) = range(points.clone().map(|p| p.0), axes.log_x);
    let (y0, y1) = range(points.map(|p| p.1), axes.log_y);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(axes.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    // plotters types log and linear axes differently: one generic drawing routine per combination.
    match (axes.log_x, axes.log_y) {
        (true, true) => draw(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(err)?,
            axes,
            series,
        )?,
        (true, false) => draw(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(err)?,
            axes,
            series,
        )?,
        (false, true) => draw(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(err)?,
            axes,
            series,
        )?,
        (false, false) => draw(
            builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?,
            axes,
            series,
        )?,
    }
    root.present().map_err(err)
}

fn draw<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    axes: &Axes<'_>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(err)
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
        line_plot(&path, &axes, &[("a".into(), vec![(1.0, 2.0), (4.0, 8.0)])]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1)?.split('<').next())
            .map(str::trim)
            .collect();
        assert!(svg.contains("<svg") && svg.contains("<polyline"), "{svg}");
        assert!(texts.contains(&"a") && texts.contains(&"t"), "{texts:?}");
    }
}
