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
        let root = SVGBackend::new(&path, (900 + LEGEND_WIDTH, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(rep, &root).map_err(|e| format!("{file}: {e}"))?;
        root.present().map_err(err)?;
        out.push((file.to_owned(), caption.to_owned()));
    }
    Ok(out)
}

/// An axis whose ticks (and grid lines) are exactly the given points — the measured x values —
/// with plotters' default formatting, which callers override with their own label formatter
/// (plotters formats only its own axis types, and a log axis with chosen ticks is not one).
pub struct KeyTicks<R: Ranged<ValueType = f64>>(pub R, pub Vec<f64>);

impl<R: Ranged<ValueType = f64>> Ranged for KeyTicks<R> {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.0.map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _: Hint) -> Vec<f64> {
        self.1.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.0.range()
    }
}

/// How a legend row shows its series.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    /// A line with a dot: a measured series.
    LineAndDot(RGBColor),
    /// A plain line: a curve (closed form, training).
    Line(RGBColor),
    /// A dashed line: a reference (an ideal, a twin kernel).
    Dashed(RGBColor),
    /// A dot alone: points without a line.
    Dot(RGBColor),
    /// A hollow square: a single marked point.
    Square(RGBColor),
    /// A filled box: a histogram's bars or a heat map's colour.
    Swatch(RGBColor),
    /// No mark: a heading for the rows below it.
    Heading,
}

/// Width of the legend panel beside a chart.
pub const LEGEND_WIDTH: u32 = 280;

/// Splits a picture into the chart (left) and the panel its legend goes in (right), so a legend
/// never covers data.
pub fn with_legend_panel<'a>(root: &Area<'a>) -> (Area<'a>, Area<'a>) {
    let width = root.dim_in_pixel().0;
    root.split_horizontally(width.saturating_sub(LEGEND_WIDTH))
}

/// One row per entry, from the top of `area`: its mark, then its label.
///
/// # Errors
/// A message if plotters fails to draw.
pub fn legend_panel(area: &Area, rows: &[(String, Mark)]) -> Result<(), String> {
    let font = ("sans-serif", 14).into_font();
    for (i, (label, mark)) in rows.iter().enumerate() {
        let y = 50 + 24 * i as i32;
        match *mark {
            Mark::LineAndDot(c) => {
                area.draw(&PathElement::new(vec![(8, y), (36, y)], c.stroke_width(2)))
                    .map_err(err)?;
                area.draw(&Circle::new((22, y), 3, c.filled()))
                    .map_err(err)?;
            }
            Mark::Line(c) => {
                area.draw(&PathElement::new(vec![(8, y), (36, y)], c.stroke_width(2)))
                    .map_err(err)?;
            }
            Mark::Dashed(c) => {
                for x in [8, 22] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 9, y)],
                        c.stroke_width(2),
                    ))
                    .map_err(err)?;
                }
            }
            Mark::Dot(c) => area
                .draw(&Circle::new((22, y), 5, c.filled()))
                .map_err(err)?,
            Mark::Square(c) => area
                .draw(&Rectangle::new(
                    [(17, y - 5), (27, y + 5)],
                    c.stroke_width(2),
                ))
                .map_err(err)?,
            Mark::Swatch(c) => area
                .draw(&Rectangle::new([(12, y - 7), (32, y + 7)], c.filled()))
                .map_err(err)?,
            Mark::Heading => {
                area.draw(&Text::new(label.as_str(), (8, y - 8), font.clone()))
                    .map_err(err)?;
                continue;
            }
        }
        area.draw(&Text::new(label.as_str(), (44, y - 8), font.clone()))
            .map_err(err)?;
    }
    Ok(())
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

/// Every degree the grid measured, in order: the x ticks of the plots against β.
fn degrees(rep: &Reproduction) -> Vec<f64> {
    let mut degrees: Vec<f64> = rep
        .grid
        .closed_form_degrees
        .iter()
        .chain(&rep.grid.self_degrees)
        .chain(&rep.grid.dense_degrees)
        .map(|&b| b as f64)
        .collect();
    degrees.sort_by(f64::total_cmp);
    degrees.dedup();
    degrees
}

fn accuracy_vs_degree(rep: &Reproduction, root: &Area) -> Result<(), String> {
    let (chart_area, legend_area) = with_legend_panel(root);
    let top = max_degree(rep);
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(
            "Separating D0 from D1: accuracy vs degree",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(
            KeyTicks(
                LogCoord::from((0.9f64..top * 1.2).log_scale()),
                degrees(rep),
            ),
            0.4f64..1.02f64,
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("degree β (log scale)")
        .y_desc("best-threshold accuracy")
        .x_label_formatter(&|b| format!("{}", b.round() as i64))
        .draw()
        .map_err(err)?;
    // Each series: its polynomial points, and the twins measured on the same data (softmax as
    // a dashed level, the linear twin — the score itself — as a square at β = 1).
    let mut series: Vec<(String, Vec<&CellResult>)> = Vec::new();
    let mut sizes: Vec<usize> = rep
        .closed_form
        .iter()
        .filter(|c| c.dataset.params().1 == 16)
        .map(|c| c.dataset.params().0)
        .collect();
    sizes.dedup();
    for n in sizes {
        let cells = rep
            .closed_form
            .iter()
            .filter(|c| c.dataset.params() == (n, 16, 16.0));
        series.push((format!("R-ratio n = {n}"), cells.collect()));
    }
    let mut self_sizes: Vec<(usize, usize, f64)> =
        rep.self_dense.iter().map(|c| c.dataset.params()).collect();
    self_sizes.dedup();
    for (n, d, b) in self_sizes {
        let cells = rep
            .self_dense
            .iter()
            .filter(|c| c.dataset.params() == (n, d, b));
        series.push((format!("R-self n = {n}, d = {d}, b = {b}"), cells.collect()));
    }
    let mut rows = Vec::new();
    let mut has_twins = false;
    for (i, (label, cells)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = polynomial_points(&cells, |c| Some(c.best_threshold_accuracy));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(err)?;
        for c in &cells {
            match c.kernel {
                NetworkKernel::Softmax { .. } => {
                    has_twins = true;
                    let level = c.best_threshold_accuracy;
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(1.0, level), (top * 1.2, level)],
                            8,
                            6,
                            color.stroke_width(1),
                        ))
                        .map_err(err)?;
                }
                NetworkKernel::Linear => {
                    has_twins = true;
                    let at = (1.0, c.best_threshold_accuracy);
                    chart
                        .draw_series(std::iter::once(
                            EmptyElement::at(at)
                                + Rectangle::new([(-5, -5), (5, 5)], color.stroke_width(2)),
                        ))
                        .map_err(err)?;
                }
                NetworkKernel::Polynomial(_) => {}
            }
        }
        rows.push((label, Mark::LineAndDot(color)));
    }
    if has_twins {
        let grey = COLORS[7];
        rows.push(("softmax twin (same data)".to_owned(), Mark::Dashed(grey)));
        rows.push((
            "linear twin, β = 1 (score itself)".to_owned(),
            Mark::Square(grey),
        ));
    }
    legend_panel(&legend_area, &rows)
}

fn planted_weight_vs_degree(rep: &Reproduction, root: &Area) -> Result<(), String> {
    let (n, d, b) = rep.grid.ratio_dense;
    let ds = RatioDataset::new(n, d, b, SignPlacement::AllButPlanted).map_err(err)?;
    let top = max_degree(rep);
    let (chart_area, legend_area) = with_legend_panel(root);
    let mut chart = ChartBuilder::on(&chart_area)
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
        .map_err(err)?;
    let cells: Vec<&CellResult> = rep.ratio_dense.iter().collect();
    let measured = polynomial_points(&cells, |c| c.planted_weight);
    let dot = COLORS[3];
    chart
        .draw_series(
            measured
                .into_iter()
                .map(|p| Circle::new(p, 5, dot.filled())),
        )
        .map_err(err)?;
    legend_panel(
        &legend_area,
        &[
            (
                "closed form ρ^β/(ρ^β + n − 1)".to_owned(),
                Mark::Line(color),
            ),
            ("engine (mean over D1 samples)".to_owned(), Mark::Dot(dot)),
        ],
    )
}

fn histograms(rep: &Reproduction, root: &Area) -> Result<(), String> {
    let largest = rep
        .closed_form
        .iter()
        .filter(|c| c.dataset.params().1 == 16)
        .map(|c| c.dataset.params().0)
        .max()
        .unwrap_or(0);
    let (charts, legend_area) = with_legend_panel(root);
    let panels = charts.split_evenly((1, 2));
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
            .y_label_formatter(&|y| format!("{}", y.round() as i64))
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .x_labels(5)
            .draw()
            .map_err(err)?;
        for (counts, color) in [(c0, COLORS[0]), (c1, COLORS[3])] {
            chart
                .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                    let x0 = lo + i as f64 * width;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + width, c as f64)],
                        color.mix(0.45).filled(),
                    )
                }))
                .map_err(err)?;
        }
    }
    let swatch = |c: RGBColor| {
        let RGBAColor(r, g, b, _) = c.mix(0.45);
        // The bars' colour over white.
        let over = |x: u8| (x as f64 * 0.45 + 255.0 * 0.55) as u8;
        Mark::Swatch(RGBColor(over(r), over(g), over(b)))
    };
    legend_panel(
        &legend_area,
        &[
            ("D0 samples".to_owned(), swatch(COLORS[0])),
            ("D1 samples".to_owned(), swatch(COLORS[3])),
        ],
    )
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
    let (charts, key) = with_legend_panel(root);
    legend_panel(
        &key,
        &[
            ("Colour key: entry of A3".to_owned(), Mark::Heading),
            ("−1".to_owned(), Mark::Swatch(value_color(-1.0, b))),
            ("+1".to_owned(), Mark::Swatch(value_color(1.0, b))),
            (
                format!("{}", b / 2.0),
                Mark::Swatch(value_color(b / 2.0, b)),
            ),
            (format!("b = {b}"), Mark::Swatch(value_color(b, b))),
        ],
    )?;
    for (panel, class) in charts
        .split_evenly((1, 2))
        .iter()
        .zip([Class::D0, Class::D1])
    {
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
    let root = SVGBackend::new(path, (900 + LEGEND_WIDTH, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let steps = curves
        .iter()
        .flat_map(|c| c.steps.last().copied())
        .max()
        .unwrap_or(1) as f64;
    let (chart_area, legend_area) = with_legend_panel(&root);
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(
            "Learning X: held-out accuracy vs training steps",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..steps, 0.4..1.02)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("Adam steps (full batch)")
        .y_desc("held-out accuracy")
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .draw()
        .map_err(err)?;
    let mut rows = Vec::new();
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        rows.push((c.kernel.label(), Mark::Line(color)));
        let points: Vec<(f64, f64)> = c
            .steps
            .iter()
            .zip(&c.test_accuracy)
            .map(|(&s, &a)| (s as f64, a))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?;
    }
    legend_panel(&legend_area, &rows)?;
    root.present().map_err(err)
}
