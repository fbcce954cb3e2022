//! The sketch accuracy study: how far sketched attention is from exact attention as the sketch
//! grows, for each family, on two kinds of inputs.
//!
//! For each family and size r ∈ {16, …, 256}: the relative Frobenius error of the normalized
//! attention weights (row-stochastic n × n matrices, `Sum` normalization) and of the outputs,
//! averaged over seeds (a seed whose estimated normalizer the engine refuses as ill-conditioned is
//! counted in the cell instead of averaged). Polynomial families are compared with exact degree-4 attention, FAVOR+
//! with softmax at scale `1/√d`; q and k are LayerNormed first, as PolySketchFormer does.

use crate::machine::MachineInfo;
use crate::plot::{Axes, Series, line_plot};
use crate::records::write_table;
use poly_core::{AttentionConfig, Kernel, Normalization, Tensor, attention, layernorm_rows};
use poly_data::synthetic::{correlated_qk, layernormed_gaussian, planted_feature, uniform};
use poly_sketch::{FeatureMap, LinearAttentionConfig, MapKind, MapSpec, linear_attention};
use std::fmt::Write as _;
use std::path::Path;

/// Which inputs q, k are drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inputs {
    /// LayerNormed standard Gaussian rows.
    LayerNormedGaussian,
    /// Gaussian rows with one planted large feature (value 8) per head in q and in k.
    PlantedFeature,
    /// Each key a noisy copy of its query (per-coordinate correlation 0.9): every query has one
    /// strongly matching key, the retrieval pattern attention exists for.
    CorrelatedQk,
}

/// The input kinds of the study.
pub const INPUTS: [Inputs; 3] = [
    Inputs::LayerNormedGaussian,
    Inputs::PlantedFeature,
    Inputs::CorrelatedQk,
];

impl Inputs {
    /// The label of tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            Inputs::LayerNormedGaussian => "layernormed gaussian",
            Inputs::PlantedFeature => "planted feature",
            Inputs::CorrelatedQk => "correlated q/k",
        }
    }

    fn draw(self, n: usize, d: usize, seed: u64) -> [Tensor<f64>; 3] {
        let shape = [1, 1, n, d];
        let normed = |t: Tensor<f64>| {
            Tensor::from_vec(shape, layernorm_rows(t.as_slice(), d).expect("d ≥ 1")).expect("shape")
        };
        // The study's own constants (small n and d, fixed parameters) are always valid.
        const VALID: &str = "the accuracy study's fixed generator parameters";
        let (q, k) = match self {
            Inputs::LayerNormedGaussian => (
                layernormed_gaussian(shape, seed).expect(VALID),
                layernormed_gaussian(shape, seed + 1).expect(VALID),
            ),
            Inputs::PlantedFeature => (
                normed(planted_feature(shape, 8.0, seed).expect(VALID).0),
                normed(planted_feature(shape, 8.0, seed + 1).expect(VALID).0),
            ),
            Inputs::CorrelatedQk => {
                let (q, k) = correlated_qk(shape, 0.9, seed).expect(VALID);
                (normed(q), normed(k))
            }
        };
        [q, k, uniform(shape, -1.0, 1.0, seed + 2).expect(VALID)]
    }
}

/// The families of the study.
pub const FAMILIES: [MapKind; 5] = [
    MapKind::PolySketch,
    MapKind::PolySketchTree,
    MapKind::TensorSketch,
    MapKind::RandomMaclaurin,
    MapKind::Favor,
];

/// One cell of the study.
#[derive(Clone, Debug)]
pub struct AccuracyCell {
    /// The map family.
    pub family: MapKind,
    /// The input distribution.
    pub inputs: Inputs,
    /// Sketch size r (the feature count of the non-PolySketch families).
    pub r: usize,
    /// Feature dimension m (r(r+1)/2 for the self-tensored PolySketch).
    pub m: usize,
    /// Relative Frobenius error of the row-normalized weights.
    pub weight_error: f64,
    /// Relative Frobenius error of the outputs, over the seeds whose output was not refused
    /// (NaN when every seed was).
    pub output_error: f64,
    /// Seeds whose sketched output the engine refused for an ill-conditioned normalizer (signed
    /// sketches whose estimated weights cancel): a finding of the study, not a failure.
    pub refused: u64,
}

/// The schema of `accuracy.{csv,json}`: one cell.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AccuracyRow {
    /// The map family (CLI name).
    pub family: &'static str,
    /// The input distribution.
    pub inputs: &'static str,
    /// Sketch size.
    pub r: usize,
    /// Feature dimension.
    pub m: usize,
    /// Relative Frobenius error of the row-normalized weights.
    pub weight_error: f64,
    /// Relative Frobenius error of the outputs over the accepted seeds.
    pub output_error: f64,
    /// Seeds refused for an ill-conditioned normalizer.
    pub refused: u64,
}

/// Sizes and repetitions of the study.
#[derive(Clone, Debug)]
pub struct AccuracyPlan {
    /// Sketch sizes r to evaluate.
    pub sizes: Vec<usize>,
    /// Sequence length.
    pub n: usize,
    /// Head dimension.
    pub d: usize,
    /// Independent draws (seeds) averaged per cell.
    pub seeds: u64,
}

impl AccuracyPlan {
    /// The report's study: n = 256, 2 seeds.
    pub fn quick() -> Self {
        AccuracyPlan {
            sizes: vec![16, 32, 64, 128, 256],
            n: 256,
            d: 64,
            seeds: 2,
        }
    }
    /// The full study: more seeds.
    pub fn full() -> Self {
        AccuracyPlan {
            sizes: vec![16, 32, 64, 128, 256],
            n: 1024,
            d: 64,
            seeds: 5,
        }
    }
}

fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

/// Row-normalized weights of exact attention (degree 4 or softmax at 1/√d).
fn exact_weights(q: &[f64], k: &[f64], n: usize, d: usize, kernel: Kernel) -> Vec<f64> {
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        let row = &mut w[i * n..(i + 1) * n];
        for (j, x) in row.iter_mut().enumerate() {
            let s: f64 = (0..d).map(|l| q[i * d + l] * k[j * d + l]).sum();
            *x = match kernel {
                Kernel::Polynomial { degree } => s.powi(degree as i32),
                _ => s / (d as f64).sqrt(),
            };
        }
        if kernel == Kernel::Softmax {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            row.iter_mut().for_each(|x| *x = (*x - max).exp());
        }
        let sum: f64 = row.iter().sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
    w
}

/// Row-normalized weights `⟨φ_q(q_i), φ_k(k_j)⟩ / Σ_j` from the map as the engine uses it.
fn sketched_weights(map: &dyn FeatureMap<f64>, q: &[f64], k: &[f64], n: usize) -> Vec<f64> {
    let m = map.feature_dim();
    let (mut a, mut b) = (vec![0.0; n * m], vec![0.0; n * m]);
    map.map_queries_into(q, &mut a);
    map.map_keys_into(k, &mut b);
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        let row = &mut w[i * n..(i + 1) * n];
        for (j, x) in row.iter_mut().enumerate() {
            *x = (0..m).map(|l| a[i * m + l] * b[j * m + l]).sum();
        }
        let sum: f64 = row.iter().sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
    w
}

/// Runs the study.
///
/// # Errors
/// A failing map or attention call, as text.
pub fn run(plan: &AccuracyPlan) -> Result<Vec<AccuracyCell>, String> {
    let (n, d) = (plan.n, plan.d);
    let mut cells = Vec::new();
    for inputs in INPUTS {
        for family in FAMILIES {
            let kernel = if family == MapKind::Favor {
                Kernel::Softmax
            } else {
                Kernel::Polynomial { degree: 4 }
            };
            for &r in &plan.sizes {
                let (mut weight_error, mut output_error, mut m) = (0.0, 0.0, 0);
                let mut refused = 0;
                for seed in 0..plan.seeds {
                    let [q, k, v] = inputs.draw(n, d, 100 * seed + 1);
                    let spec = MapSpec::new(family, 4, r, seed);
                    let map = spec.build::<f64>(d).map_err(|e| e.to_string())?;
                    m = map.feature_dim();
                    let want_w = exact_weights(q.as_slice(), k.as_slice(), n, d, kernel);
                    let got_w = sketched_weights(map.as_ref(), q.as_slice(), k.as_slice(), n);
                    weight_error += relative_error(&got_w, &want_w);
                    let mut exact_cfg = AttentionConfig::new(kernel);
                    if kernel == Kernel::Softmax {
                        exact_cfg.scale = Some(1.0 / (d as f64).sqrt());
                    }
                    let exact = attention(q.view(), k.view(), v.view(), &exact_cfg)
                        .map_err(|e| e.to_string())?;
                    let cfg =
                        LinearAttentionConfig::default().with_normalization(Normalization::Sum);
                    // A refused normalizer (signed sketches) is itself a finding: counted.
                    match linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg) {
                        Ok(sketched) => {
                            output_error += relative_error(sketched.as_slice(), exact.as_slice())
                        }
                        Err(
                            poly_core::Error::IllConditionedNormalizer { .. }
                            | poly_core::Error::AllScoresZero { .. },
                        ) => refused += 1,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                let seeds = plan.seeds as f64;
                let accepted = (plan.seeds - refused) as f64;
                cells.push(AccuracyCell {
                    family,
                    inputs,
                    r,
                    m,
                    weight_error: weight_error / seeds,
                    output_error: output_error / accepted,
                    refused,
                });
            }
        }
    }
    Ok(cells)
}

fn family_label(kind: MapKind) -> &'static str {
    match kind {
        MapKind::PolySketch => "polysketch (self-tensored)",
        MapKind::PolySketchTree => "polysketch tree",
        MapKind::TensorSketch => "tensorsketch",
        MapKind::RandomMaclaurin => "maclaurin",
        MapKind::Favor => "favor+ (softmax)",
        other => other.name(),
    }
}

/// Markdown tables (one per input kind): weight and output errors per family and size.
pub fn markdown(cells: &[AccuracyCell], plan: &AccuracyPlan) -> String {
    let mut out = String::new();
    for inputs in INPUTS {
        writeln!(
            out,
            "\n**{}** (n = {}, d = {}, mean over {} seeds): relative error of weights / outputs\n",
            inputs.label(),
            plan.n,
            plan.d,
            plan.seeds
        )
        .unwrap();
        out.push_str("| family |");
        for r in &plan.sizes {
            write!(out, " r = {r} |").unwrap();
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(plan.sizes.len()));
        out.push('\n');
        for family in FAMILIES {
            write!(out, "| {} |", family_label(family)).unwrap();
            for &r in &plan.sizes {
                match cells
                    .iter()
                    .find(|c| c.family == family && c.inputs == inputs && c.r == r)
                {
                    Some(c) if c.refused == plan.seeds => {
                        write!(out, " {:.3} / refused (m = {}) |", c.weight_error, c.m).unwrap()
                    }
                    Some(c) => {
                        write!(
                            out,
                            " {:.3} / {:.3} (m = {}",
                            c.weight_error, c.output_error, c.m
                        )
                        .unwrap();
                        if c.refused > 0 {
                            write!(out, "; {} of {} seeds refused", c.refused, plan.seeds).unwrap();
                        }
                        out.push_str(") |");
                    }
                    None => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Writes `accuracy.{csv,json,md}` and the SVGs into `dir`.
///
/// # Errors
/// A message naming the file that failed.
pub fn write(cells: &[AccuracyCell], plan: &AccuracyPlan, dir: &Path) -> Result<(), String> {
    let rows: Vec<AccuracyRow> = cells
        .iter()
        .map(|c| AccuracyRow {
            family: c.family.name(),
            inputs: c.inputs.label(),
            r: c.r,
            m: c.m,
            weight_error: c.weight_error,
            output_error: c.output_error,
            refused: c.refused,
        })
        .collect();
    write_table(dir, "accuracy", &rows, &MachineInfo::collect(1))?;
    std::fs::write(dir.join("accuracy.md"), markdown(cells, plan)).map_err(|e| e.to_string())?;
    for (inputs, file) in [
        (Inputs::LayerNormedGaussian, "accuracy_gaussian.svg"),
        (Inputs::PlantedFeature, "accuracy_planted.svg"),
        (Inputs::CorrelatedQk, "accuracy_correlated.svg"),
    ] {
        let series: Vec<Series> = FAMILIES
            .into_iter()
            .map(|family| {
                let points = cells
                    .iter()
                    .filter(|c| c.family == family && c.inputs == inputs)
                    .filter(|c| c.output_error.is_finite())
                    .map(|c| (c.r as f64, c.output_error.max(1e-6)))
                    .collect();
                (family_label(family).to_owned(), points)
            })
            .collect();
        let title = format!("Relative output error vs sketch size ({})", inputs.label());
        let axes = Axes {
            title: &title,
            x: "sketch size r (log)",
            y: "relative output error (log)",
            log_x: true,
            log_y: true,
        };
        line_plot(&dir.join(file), &axes, &series, &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_row_stochastic_and_errors_are_relative() {
        let (n, d) = (12, 4);
        let [q, k, _] = Inputs::CorrelatedQk.draw(n, d, 3);
        for kernel in [Kernel::Polynomial { degree: 4 }, Kernel::Softmax] {
            let w = exact_weights(q.as_slice(), k.as_slice(), n, d, kernel);
            for row in w.chunks(n) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        // Exact degree-2 features reproduce exact degree-2 weights: zero error.
        let map = poly_sketch::ExactDegree2::new(d).unwrap();
        let got = sketched_weights(&map, q.as_slice(), k.as_slice(), n);
        let want = exact_weights(
            q.as_slice(),
            k.as_slice(),
            n,
            d,
            Kernel::Polynomial { degree: 2 },
        );
        assert!(relative_error(&got, &want) < 1e-12);
        assert!((relative_error(&[2.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn the_study_fills_every_cell() {
        let plan = AccuracyPlan {
            sizes: vec![4, 8],
            n: 16,
            d: 8,
            seeds: 1,
        };
        let cells = run(&plan).unwrap();
        assert_eq!(cells.len(), INPUTS.len() * FAMILIES.len() * 2);
        assert!(
            cells
                .iter()
                .all(|c| c.weight_error >= 0.0 && (c.output_error >= 0.0 || c.refused == 1))
        );
        let polysketch = cells
            .iter()
            .find(|c| c.family == MapKind::PolySketch && c.r == 8)
            .unwrap();
        assert_eq!(polysketch.m, 36);
        let md = markdown(&cells, &plan);
        assert!(md.contains("correlated q/k") && md.contains("(m = 36)"));
    }
}
