//! Which cells the reproduction runs: `--quick` (under a minute on 2 cores) or the full grid.

use crate::network::{NetworkKernel, NetworkWeights};
use crate::runner::{CellResult, Dataset, run_dense, run_ratio_closed_form};
use poly_core::Error;
use poly_data::datasets::{RatioDataset, SelfDataset, SignPlacement};

/// The grid of one reproduction.
#[derive(Clone, Debug)]
pub struct Grid {
    /// R-ratio sizes `(n, d, b)` evaluated with the closed form.
    pub ratio_closed_form: Vec<(usize, usize, f64)>,
    /// Degrees of the closed-form cells.
    pub closed_form_degrees: Vec<u32>,
    /// Samples per class of each closed-form cell.
    pub closed_form_samples: usize,
    /// The R-ratio size run through the engine (weights vs the closed form).
    pub ratio_dense: (usize, usize, f64),
    /// Degrees of the engine's R-ratio cells.
    pub dense_degrees: Vec<u32>,
    /// Samples per class of each engine R-ratio cell.
    pub dense_samples: usize,
    /// R-self sizes `(n, d, b)`, through the engine.
    pub self_sizes: Vec<(usize, usize, f64)>,
    /// Degrees of the R-self cells.
    pub self_degrees: Vec<u32>,
    /// Samples per class of each R-self cell.
    pub self_samples: usize,
    /// Seed of every draw.
    pub seed: u64,
}

impl Grid {
    /// Under a minute on 2 cores.
    pub fn quick() -> Self {
        Grid {
            ratio_closed_form: vec![(256, 16, 16.0), (1024, 16, 16.0), (4096, 16, 16.0)],
            closed_form_degrees: vec![1, 2, 4, 8, 12, 16, 24, 32],
            closed_form_samples: 2000,
            ratio_dense: (1024, 16, 16.0),
            dense_degrees: vec![1, 4, 8, 16, 32],
            dense_samples: 30,
            self_sizes: vec![(512, 4, 6.0)],
            self_degrees: vec![1, 2, 4, 8, 16],
            self_samples: 100,
            seed: 2023,
        }
    }

    /// The full grid: more sizes, degrees and samples (under 15 minutes on 2 cores).
    pub fn full() -> Self {
        let mut ratio = Vec::new();
        for n in [256, 1024, 4096, 16384, 65536] {
            for (d, b) in [(16, 16.0), (8, 12.0), (32, 24.0)] {
                ratio.push((n, d, b));
            }
        }
        Grid {
            ratio_closed_form: ratio,
            closed_form_degrees: vec![1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64],
            closed_form_samples: 2000,
            ratio_dense: (4096, 16, 16.0),
            dense_degrees: vec![1, 2, 4, 8, 12, 16, 32],
            dense_samples: 200,
            self_sizes: vec![(128, 4, 6.0), (512, 4, 6.0), (2048, 4, 6.0)],
            self_degrees: vec![1, 2, 4, 8, 16, 32],
            self_samples: 200,
            seed: 2023,
        }
    }
}

/// Everything a reproduction measured.
#[derive(Clone, Debug)]
pub struct Reproduction {
    /// The grid that was run.
    pub grid: Grid,
    /// R-ratio by closed form, R-ratio through the engine, R-self through the engine.
    pub closed_form: Vec<CellResult>,
    /// R-ratio through the engine.
    pub ratio_dense: Vec<CellResult>,
    /// R-self through the engine.
    pub self_dense: Vec<CellResult>,
}

fn with_twins(degrees: &[u32]) -> Vec<NetworkKernel> {
    let mut kernels: Vec<NetworkKernel> = degrees
        .iter()
        .map(|&b| NetworkKernel::Polynomial(b))
        .collect();
    kernels.push(NetworkKernel::Softmax { scale: 1.0 });
    kernels.push(NetworkKernel::Linear);
    kernels
}

fn data_error(e: poly_data::DataError) -> Error {
    Error::InvalidParameter {
        name: "dataset",
        value: e.to_string(),
        expected: "valid dataset parameters",
    }
}

/// Runs every cell of `grid`.
///
/// # Errors
/// Invalid dataset parameters or an engine failure other than an ill-conditioned normalizer.
pub fn run(grid: Grid) -> Result<Reproduction, Error> {
    let mut closed_form = Vec::new();
    for &(n, d, b) in &grid.ratio_closed_form {
        let ds = RatioDataset::new(n, d, b, SignPlacement::AllButPlanted).map_err(data_error)?;
        closed_form.extend(run_ratio_closed_form(
            &ds,
            &with_twins(&grid.closed_form_degrees),
            grid.closed_form_samples,
            grid.seed,
        ));
    }
    let (n, d, b) = grid.ratio_dense;
    let ds = RatioDataset::new(n, d, b, SignPlacement::AllButPlanted).map_err(data_error)?;
    let weights = NetworkWeights::default();
    let ratio_dense = run_dense(
        Dataset::Ratio(ds),
        &with_twins(&grid.dense_degrees),
        grid.dense_samples,
        grid.seed,
        &weights,
    )?;
    let mut self_dense = Vec::new();
    for &(n, d, b) in &grid.self_sizes {
        let ds = SelfDataset::new(n, d, b).map_err(data_error)?;
        let kernels: Vec<NetworkKernel> = grid
            .self_degrees
            .iter()
            .map(|&b| NetworkKernel::Polynomial(b))
            .collect();
        self_dense.extend(run_dense(
            Dataset::SelfAttention(ds),
            &kernels,
            grid.self_samples,
            grid.seed,
            &weights,
        )?);
    }
    Ok(Reproduction {
        grid,
        closed_form,
        ratio_dense,
        self_dense,
    })
}
