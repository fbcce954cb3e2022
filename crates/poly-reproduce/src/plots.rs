//! SVG plots of a reproduction (plotters, SVG backend only: no fonts or native libraries needed).

use super::grid::Reproduction;
use crate::closed_form::ClosedForm;

use crate::network::NetworkKernel;
use crate::runner::CellResult;
use plotters::coord::Shift;
use plotters::prelude::*;
use poly_data::datasets::{Class, RatioDataset, SignPlacement};
use std::path::Path;

/// The palette of every plot the project draws (matplotlib's "tab10" order).
pub const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws one plot of a reproduction onto an area.
type DrawPlot = fn(&Reproduction, &Area) -> Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Writes every plot into `dir`; returns `(file name, caption)` pairs for the report.
///
/// # Errors
/// A message naming the plot that failed.
pub fn write_all(rep: &Reproduction, dir: &Path) -> Result<Vec<(String, String)>, String> {
    let plots: [(&str, &str, DrawPlot); 4] = [
        (
            "accuracy_vs_degree.svg",
            "Best-threshold accuracy vs degree β: a curve per n (R-ratio, d = 16, b = 16, closed form) and R-self through the engine",
            accuracy_vs_degree,
        ),
        (
            "planted_weight_vs_degree.svg",
            "Mean weight on the planted token vs β: engine (points) and closed form ρ^β/(ρ^β + n − 1) (line)",
            planted_weight_vs_degree,
        ),
        (
            "histograms.svg",
            "Readout T of D0 and D1 at a low and a high degree (R-ratio, n = 4096, closed form)",
            histograms,
        ),
        (
            "heatmaps.svg",
            "A D0 and a D1 sample of R-ratio (values A3 = Σ ∘ A; the planted entry b in D1), as in the paper's Figure 1",
            heatmaps,
        ),
    ];
    let mut out = Vec::new();
    for (file, caption, draw) in plots {
        let path = dir.join(file);
        let root = SVGBackend::new(&path, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(rep, &root).map_err(|e| format!("{file}: {e}"))?;
        root.present().map_err(err)?;
        out.push((file.to_owned(), caption.to_owned()));
    }
    Ok(out)
}

/// The legend of a chart's labelled series, boxed, at `position`.
fn draw_legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn polynomial_points(
    cells: &[&CellResult],
    value: impl Fn(&CellResult) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = cells
        .iter()
        .filter_map(|c| match c.kernel {
            NetworkKernel::Polynomial(b) => value(c).map(|v| (b as f64, v)),
            _ => None,
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

fn max_degree(rep: &Reproduction) -> f64 {
    rep.grid
        .closed_form_degrees
        .iter()
        .chain(&rep.grid.self_degrees)
        .copied()
        .max()
        .unwrap_or(64) as f64
}

fn accuracy_vs_degree(rep: &Reproduction, root: &Area) -> Result<(), String> {
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Separating D0 from D1: accuracy vs degree",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((1f64..max_degree(rep)).log_scale(), 0.4f64..1.02f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("degree β (log scale)")
        .y_desc("best-threshold accuracy")
        .draw()
        .map_err(err)?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut sizes: Vec<usize> = rep
        .closed_form
        .iter()
        .filter(|c| c.dataset.params().1 == 16)
        .map(|c| c.dataset.params().0)
        .collect();
    sizes.dedup();
    for n in sizes {
        let cells: Vec<&CellResult> = rep
            .closed_form
            .iter()
            .filter(|c| c.dataset.params() == (n, 16, 16.0))
            .collect();
        series.push((
            format!("R-ratio n = {n}"),
            polynomial_points(&cells, |c| Some(c.best_threshold_accuracy)),
        ));
    }
    let mut self_sizes: Vec<(usize, usize, f64)> =
        rep.self_dense.iter().map(|c| c.dataset.params()).collect();
    self_sizes.dedup();
    for (n, d, b) in self_sizes {
        let cells: Vec<&CellResult> = rep
            .self_dense
            .iter()
            .filter(|c| c.dataset.params() == (n, d, b))
            .collect();
        series.push((
            format!("R-self n = {n}, d = {d}, b = {b}"),
            polynomial_points(&cells, |c| Some(c.best_threshold_accuracy)),
        ));
    }
    for (i, (label, points)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

fn planted_weight_vs_degree(rep: &Reproduction, root: &Area) -> Result<(), String> {
    let (n, d, b) = rep.grid.ratio_dense;
    let ds = RatioDataset::new(n, d, b, SignPlacement::AllButPlanted).map_err(err)?;
    let top = max_degree(rep);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Weight on the planted token (R-ratio n = {n}, d = {d}, b = {b})"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(1f64..top, 0f64..1.02f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("degree β")
        .y_desc("weight of rows j ≠ k* on k*")
        .draw()
        .map_err(err)?;
    let line: Vec<(f64, f64)> = (1..=top as u32)
        .map(|beta| {
            (
                beta as f64,
                ds.planted_weight(NetworkKernel::Polynomial(beta)),
            )
        })
        .collect();
    let color = COLORS[0];
    chart
        .draw_series(LineSeries::new(line, color.stroke_width(2)))
        .map_err(err)?
        .label("closed form ρ^β/(ρ^β + n − 1)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    let cells: Vec<&CellResult> = rep.ratio_dense.iter().collect();
    let measured = polynomial_points(&cells, |c| c.planted_weight);
    let dot = COLORS[3];
    chart
        .draw_series(
            measured
                .into_iter()
                .map(|p| Circle::new(p, 5, dot.filled())),
        )
        .map_err(err)?
        .label("engine (mean over D1 samples)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, dot.filled()));
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

fn histograms(rep: &Reproduction, root: &Area) -> Result<(), String> {
    let largest = rep
        .closed_form
        .iter()
        .filter(|c| c.dataset.params().1 == 16)
        .map(|c| c.dataset.params().0)
        .max()
        .unwrap_or(0);
    let panels = root.split_evenly((1, 2));
    for (panel, beta) in panels.iter().zip([2u32, 16]) {
        let Some(cell) = rep.closed_form.iter().find(|c| {
            c.dataset.params() == (largest, 16, 16.0) && c.kernel == NetworkKernel::Polynomial(beta)
        }) else {
            continue;
        };
        let lo = cell
            .t0
            .iter()
            .chain(&cell.t1)
            .cloned()
            .fold(f64::INFINITY, f64::min);
        let hi = cell
            .t0
            .iter()
            .chain(&cell.t1)
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        let bins = 40;
        let width = (hi - lo).max(1e-9) / bins as f64;
        let count = |t: &[f64]| {
            let mut c = vec![0u32; bins];
            for &x in t {
                c[(((x - lo) / width) as usize).min(bins - 1)] += 1;
            }
            c
        };
        let (c0, c1) = (count(&cell.t0), count(&cell.t1));
        let top = c0.iter().chain(&c1).copied().max().unwrap_or(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("β = {beta}, n = {largest}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi + width, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("readout T")
            .y_desc("samples")
            .x_labels(5)
            .draw()
            .map_err(err)?;
        for (counts, color, label) in [(c0, COLORS[0], "D0"), (c1, COLORS[3], "D1")] {
            chart
                .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                    let x0 = lo + i as f64 * width;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + width, c as f64)],
                        color.mix(0.45).filled(),
                    )
                }))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.mix(0.45).filled())
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

/// Blue for −1, white for 0, red for +1 and darker red up to `b`.
fn value_color(x: f64, b: f64) -> RGBColor {
    if x < 0.0 {
        RGBColor(70, 110, 200)
    } else if x <= 1.0 {
        RGBColor(240, 200, 160)
    } else {
        let t = ((x - 1.0) / (b - 1.0)).clamp(0.0, 1.0);
        RGBColor(200 - (120.0 * t) as u8, 40, 40)
    }
}

fn heatmaps(_rep: &Reproduction, root: &Area) -> Result<(), String> {
    let (n, d, b) = (24, 12, 16.0);
    let ds = RatioDataset::new(n, d, b, SignPlacement::AllButPlanted).map_err(err)?;
    for (panel, class) in root.split_evenly((1, 2)).iter().zip([Class::D0, Class::D1]) {
        let sample = ds.sample(class, 5);
        let title = match class {
            Class::D0 => "D0: all entries ±1".to_owned(),
            Class::D1 => format!("D1: one entry b = {b}"),
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(40)
            .build_cartesian_2d(0..d, 0..n)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("feature i")
            .y_desc("token k")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                (0..n)
                    .flat_map(|k| (0..d).map(move |i| (k, i)))
                    .map(|(k, i)| {
                        let x = sample.a3[k * d + i];
                        Rectangle::new([(i, n - 1 - k), (i + 1, n - k)], value_color(x, b).filled())
                    }),
            )
            .map_err(err)?;
    }
    Ok(())
}

/// Held-out accuracy against training steps, one line per kernel (`polyattn reproduce --train`).
///
/// # Errors
/// A message if the file cannot be drawn.
pub fn training_plot(curves: &[crate::training::Curve], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let steps = curves
        .iter()
        .flat_map(|c| c.steps.last().copied())
        .max()
        .unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Learning X: held-out accuracy vs training steps",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        // Room below 0.4 keeps the legend off the curves (accuracy starts near 0.5).
        .build_cartesian_2d(0.0..steps, 0.0..1.02)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("Adam steps (full batch)")
        .y_desc("held-out accuracy")
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = c
            .steps
            .iter()
            .zip(&c.test_accuracy)
            .map(|(&s, &a)| (s as f64, a))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(c.kernel.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}
