//! Grids of the experiment: for each dataset and kernel, readouts of many D0 and D1 samples and the
//! metrics of docs/math.md §5.4. Deterministic by seed (every sample has its own seed), rayon over
//! samples, a progress bar on a terminal.

use crate::closed_form::ClosedForm;
use crate::metrics::{
    best_threshold_accuracy, fixed_threshold_accuracy, roc_auc, standardized_margin,
};
use crate::network::{NetworkKernel, NetworkWeights, Readout, forward};
use indicatif::{ProgressBar, ProgressStyle};
use poly_core::Error;
use poly_data::datasets::{Class, RatioDataset, Sample, SelfDataset, sample_seed};
use rayon::prelude::*;

/// Which dataset a cell uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dataset {
    /// R-ratio, with a closed form.
    Ratio(RatioDataset),
    /// R-self: literal self-attention.
    SelfAttention(SelfDataset),
}

impl Dataset {
    /// The dataset's name in tables (`R-ratio`, `R-self`).
    pub fn name(&self) -> &'static str {
        match self {
            Dataset::Ratio(_) => "R-ratio",
            Dataset::SelfAttention(_) => "R-self",
        }
    }
    /// `(n, d, b)`.
    pub fn params(&self) -> (usize, usize, f64) {
        match self {
            Dataset::Ratio(r) => (r.n, r.d, r.b),
            Dataset::SelfAttention(s) => (s.n, s.d, s.b),
        }
    }
    fn sample(&self, class: Class, seed: u64) -> Sample {
        match self {
            Dataset::Ratio(r) => r.sample(class, seed),
            Dataset::SelfAttention(s) => s.sample(class, seed),
        }
    }
    /// The fixed threshold `τ = n·b/2` (docs/math.md §5.2).
    pub fn fixed_tau(&self) -> f64 {
        let (n, _, b) = self.params();
        n as f64 * b / 2.0
    }
}

/// How readouts are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// R-ratio's closed form (X = Y = I).
    ClosedForm,
    /// The network through poly-core's engine.
    Dense,
}

/// The outcome of one grid cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CellResult {
    /// The dataset and its size.
    pub dataset: Dataset,
    /// The network kernel.
    pub kernel: NetworkKernel,
    /// Closed form or engine.
    pub method: Method,
    /// Readouts of the D0 and D1 samples whose normalizers were well-conditioned.
    pub t0: Vec<f64>,
    /// Readouts of the D1 samples (see `t0`).
    pub t1: Vec<f64>,
    /// Accuracy with τ fitted on one half, scored on the other.
    pub best_threshold_accuracy: f64,
    /// Accuracy at the fixed τ = n·b/2.
    pub fixed_threshold_accuracy: f64,
    /// Area under the ROC curve.
    pub auc: f64,
    /// Mean over D1 samples of the mean weight rows `j ≠ k*` put on the planted token.
    pub planted_weight: Option<f64>,
    /// The closed-form planted weight (R-ratio).
    pub predicted_weight: Option<f64>,
    /// Standardized margin (min T1 − max T0)/√(n·d).
    pub margin: f64,
    /// Samples the engine rejected for a zero or ill-conditioned normalizer (odd degrees).
    pub ill_conditioned: usize,
}

fn finish_cell(
    dataset: Dataset,
    kernel: NetworkKernel,
    method: Method,
    t0: Vec<f64>,
    t1: Vec<f64>,
    planted_weight: Option<f64>,
    ill_conditioned: usize,
) -> CellResult {
    let (n, d, _) = dataset.params();
    let predicted_weight = match dataset {
        Dataset::Ratio(r) => Some(r.planted_weight(kernel)),
        Dataset::SelfAttention(_) => None,
    };
    CellResult {
        best_threshold_accuracy: best_threshold_accuracy(&t0, &t1),
        fixed_threshold_accuracy: fixed_threshold_accuracy(&t0, &t1, dataset.fixed_tau()),
        auc: roc_auc(&t0, &t1),
        margin: standardized_margin(&t0, &t1, n, d),
        dataset,
        kernel,
        method,
        t0,
        t1,
        planted_weight,
        predicted_weight,
        ill_conditioned,
    }
}

fn progress(total: u64, what: &str) -> ProgressBar {
    // indicatif draws nothing when stderr is not a terminal.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:30} [{bar:30}] {pos}/{len} {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// R-ratio with the closed form: each sample is drawn once and evaluated for every kernel.
pub fn run_ratio_closed_form(
    dataset: &RatioDataset,
    kernels: &[NetworkKernel],
    samples_per_class: usize,
    seed: u64,
) -> Vec<CellResult> {
    let bar = progress(
        2 * samples_per_class as u64,
        &format!("R-ratio n={} closed form", dataset.n),
    );
    let per_class = |class: Class| -> Vec<Vec<f64>> {
        (0..samples_per_class as u64)
            .into_par_iter()
            .map(|i| {
                let (planted, signs) = dataset.draw(class, sample_seed(seed, class, i));
                let sums = dataset.value_row_sums(planted, &signs);
                bar.inc(1);
                kernels
                    .iter()
                    .map(|&k| dataset.closed_form_from_row_sums(k, planted, &sums))
                    .collect()
            })
            .collect()
    };
    let (t0, t1) = (per_class(Class::D0), per_class(Class::D1));
    bar.finish_and_clear();
    kernels
        .iter()
        .enumerate()
        .map(|(c, &kernel)| {
            let column = |t: &[Vec<f64>]| t.iter().map(|row| row[c]).collect();
            let weight = dataset.planted_weight(kernel);
            finish_cell(
                Dataset::Ratio(*dataset),
                kernel,
                Method::ClosedForm,
                column(&t0),
                column(&t1),
                Some(weight),
                0,
            )
        })
        .collect()
}

/// Any dataset through the engine (`weights` = X and Y).
///
/// # Errors
/// Engine errors other than ill-conditioned normalizers, which are counted per cell instead.
pub fn run_dense(
    dataset: Dataset,
    kernels: &[NetworkKernel],
    samples_per_class: usize,
    seed: u64,
    weights: &NetworkWeights,
) -> Result<Vec<CellResult>, Error> {
    let (n, d, _) = dataset.params();
    let bar = progress(
        (2 * samples_per_class * kernels.len()) as u64,
        &format!("{} n={n} dense", dataset.name()),
    );
    let mut cells = Vec::with_capacity(kernels.len());
    for &kernel in kernels {
        let per_class = |class: Class| -> Result<Vec<Option<Readout>>, Error> {
            (0..samples_per_class as u64)
                .into_par_iter()
                .map(|i| {
                    let sample = dataset.sample(class, sample_seed(seed, class, i));
                    let result = forward(&sample, n, d, kernel, weights);
                    bar.inc(1);
                    match result {
                        Ok(r) => Ok(Some(r)),
                        Err(
                            Error::IllConditionedNormalizer { .. } | Error::AllScoresZero { .. },
                        ) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .collect()
        };
        let (r0, r1) = (per_class(Class::D0)?, per_class(Class::D1)?);
        let ill = r0.iter().chain(&r1).filter(|r| r.is_none()).count();
        let t0: Vec<f64> = r0.iter().flatten().map(|r| r.t).collect();
        let t1: Vec<f64> = r1.iter().flatten().map(|r| r.t).collect();
        let weights_d1: Vec<f64> = r1
            .iter()
            .flatten()
            .filter_map(|r| r.planted_weight)
            .collect();
        let planted = (!weights_d1.is_empty())
            .then(|| weights_d1.iter().sum::<f64>() / weights_d1.len() as f64);
        cells.push(finish_cell(
            dataset,
            kernel,
            Method::Dense,
            t0,
            t1,
            planted,
            ill,
        ));
    }
    bar.finish_and_clear();
    Ok(cells)
}
