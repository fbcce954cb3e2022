//! R-ratio's readout in closed form (docs/math.md §5.2), O(n·d) per sample for drawing the signs.
//!
//! With `X = Y = I`, D0 scores are all `d`, so every row averages the values: `T0 = Σ_k r_k`
//! (`r_k` the row sums of `A3`). In D1, rows `j ≠ k*` put weight `w` on `k*` and row `k*` puts
//! `w*` on itself; with `m = (n − 1)·w + w*`: `T1 = m·r_{k*} + (n − m)/(n − 1)·Σ_{k≠k*} r_k`.

use crate::network::NetworkKernel;
use poly_data::datasets::RatioDataset;

/// `1 / (1 + (n − 1)·e^{−L})`: a weight whose log-odds against each of the other `n − 1` equal
/// tokens is `L`, evaluated without overflow for any `L`.
fn weight_from_log_ratio(n: usize, log_ratio: f64) -> f64 {
    1.0 / (1.0 + (n - 1) as f64 * (-log_ratio).exp())
}

/// R-ratio's weights and readout in closed form, for each network kernel.
pub trait ClosedForm {
    /// `w`: the weight a row `j ≠ k*` puts on the planted token, `ρ^β/(ρ^β + n − 1)` for degree β.
    fn planted_weight(&self, kernel: NetworkKernel) -> f64;
    /// `w*`: the weight the planted row puts on itself.
    fn self_weight(&self, kernel: NetworkKernel) -> f64;
    /// `T` of the sample `(planted, signs)` drawn by [`RatioDataset::draw`], for `X = Y = I`.
    fn closed_form_readout(
        &self,
        kernel: NetworkKernel,
        planted: Option<(usize, usize)>,
        signs: &[f64],
    ) -> f64;
    /// `T` from precomputed row sums (so one draw serves every kernel of a grid).
    fn closed_form_from_row_sums(
        &self,
        kernel: NetworkKernel,
        planted: Option<(usize, usize)>,
        row_sums: &[f64],
    ) -> f64;
}

impl ClosedForm for RatioDataset {
    /// `w`: the weight a row `j ≠ k*` puts on the planted token, `ρ^β/(ρ^β + n − 1)` for degree β.
    fn planted_weight(&self, kernel: NetworkKernel) -> f64 {
        let log_ratio = match kernel {
            NetworkKernel::Softmax { scale } => scale * (self.b - 1.0),
            other => other.degree().unwrap_or(1) as f64 * self.rho().ln(),
        };
        weight_from_log_ratio(self.n, log_ratio)
    }

    /// `w*`: the weight the planted row puts on itself.
    fn self_weight(&self, kernel: NetworkKernel) -> f64 {
        let log_ratio = match kernel {
            NetworkKernel::Softmax { scale } => scale * (self.b * self.b - self.b),
            other => other.degree().unwrap_or(1) as f64 * self.gamma().ln(),
        };
        weight_from_log_ratio(self.n, log_ratio)
    }

    /// `T` of the sample `(planted, signs)` drawn by [`RatioDataset::draw`], for `X = Y = I`.
    fn closed_form_readout(
        &self,
        kernel: NetworkKernel,
        planted: Option<(usize, usize)>,
        signs: &[f64],
    ) -> f64 {
        let row_sums = self.value_row_sums(planted, signs);
        self.closed_form_from_row_sums(kernel, planted, &row_sums)
    }

    /// `T` from precomputed row sums (so one draw serves every kernel of a grid).
    fn closed_form_from_row_sums(
        &self,
        kernel: NetworkKernel,
        planted: Option<(usize, usize)>,
        row_sums: &[f64],
    ) -> f64 {
        let total: f64 = row_sums.iter().sum();
        match planted {
            None => total,
            Some((k, _)) => {
                let n = self.n as f64;
                let m = (n - 1.0) * self.planted_weight(kernel) + self.self_weight(kernel);
                let rest = total - row_sums[k];
                m * row_sums[k] + (n - m) / (n - 1.0) * rest
            }
        }
    }
}
