//! FAVOR+ positive orthogonal random features for softmax (Choromanski et al.; docs/math.md §3.5):
//! `φ(x) = m^{−1/2} exp(−‖x'‖²/2) (exp(w_1·x'), …, exp(w_m·x'))` with `x' = d^{−1/4} x`, so that
//! `E⟨φ(q), φ(k)⟩ = exp(q·k/√d)`. The rows `w_l` come in blocks of `d` orthogonalized Gaussian
//! rows whose norms are redrawn from the χ_d distribution (each row is marginally `N(0, I)`).
//!
//! Stabilizers, which keep the exponentials finite, never look at other tokens: a query row is
//! divided by its own largest feature, and all keys by one constant fixed by the map alone
//! (`exp(max(0, max_l ‖w_l‖²/2 − 40))`, since `w·x − ‖x‖²/2 ≤ ‖w‖²/2` for every `x`). Both cancel
//! under `Sum` normalization, the only one FAVOR+ accepts; [`FeatureMap::map_into`] returns the
//! unstabilized, unbiased features.

use crate::feature_map::FeatureMap;
use poly_core::primitives::{exp_in_place, row_max};
use poly_core::primitives::{gemm_ab, gemm_abt};
use poly_core::{Element, Result, check_elements};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

/// Largest exponent a key feature may reach after the key stabilizer.
const KEY_EXPONENT_BOUND: f64 = 40.0;

/// FAVOR+ features of dimension `m` for inputs of dimension `d`.
#[derive(Clone, Debug)]
pub struct Favor<T> {
    d: usize,
    m: usize,
    /// `m × d` row-major, already multiplied by `d^{−1/4}` (the input scaling folded in).
    w: Vec<T>,
    /// `d^{−1/2}`: `‖x'‖² = ‖x‖²·d^{−1/2}`.
    input_scale_sq: f64,
    key_shift: f64,
}

impl<T: Element> Favor<T> {
    /// Draws the orthogonal random features from `seed`.
    ///
    /// # Errors
    /// `d = 0` or `m = 0`.
    pub fn new(d: usize, m: usize, seed: u64) -> Result<Self> {
        crate::polysketch::check_sketch_parameters(d, 1, m)?;
        // m projection rows of length d, drawn in orthogonal blocks of d × d.
        check_elements("FAVOR+ projections", &[m.max(d), d], 8)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut gaussian = || rng.sample::<f64, _>(StandardNormal);
        let mut rows: Vec<Vec<f64>> = Vec::with_capacity(m);
        while rows.len() < m {
            let block: Vec<Vec<f64>> = (0..d)
                .map(|_| (0..d).map(|_| gaussian()).collect())
                .collect();
            for mut row in orthonormalize(block) {
                if rows.len() == m {
                    break;
                }
                let chi = (0..d).map(|_| gaussian().powi(2)).sum::<f64>().sqrt();
                row.iter_mut().for_each(|x| *x *= chi);
                rows.push(row);
            }
        }
        let max_half_norm = rows
            .iter()
            .map(|r| r.iter().map(|x| x * x).sum::<f64>() / 2.0)
            .fold(0.0, f64::max);
        let input_scale = (d as f64).powf(-0.25);
        Ok(Favor {
            d,
            m,
            w: rows
                .iter()
                .flatten()
                .map(|&x| T::from_f64(x * input_scale))
                .collect(),
            input_scale_sq: input_scale * input_scale,
            key_shift: (max_half_norm - KEY_EXPONENT_BOUND).max(0.0),
        })
    }

    /// Writes `w_l·x' − ‖x'‖²/2` for every row into `out` (`rows × m`).
    fn exponents(&self, x: &[T], out: &mut [T]) {
        let rows = x.len() / self.d;
        gemm_abt(out, x, &self.w, rows, self.m, self.d, T::ONE);
        for (x, e) in x.chunks_exact(self.d).zip(out.chunks_exact_mut(self.m)) {
            let half_norm =
                x.iter().map(|v| v.to_f64().powi(2)).sum::<f64>() * self.input_scale_sq / 2.0;
            let half_norm = T::from_f64(half_norm);
            e.iter_mut().for_each(|v| *v -= half_norm);
        }
    }

    /// `exp(e − shift(row)) / √m` for every row of exponents.
    fn exponentiate(&self, out: &mut [T], shift: impl Fn(&[T]) -> T) {
        let norm = T::from_f64(1.0 / (self.m as f64).sqrt());
        for e in out.chunks_exact_mut(self.m) {
            let s = shift(e);
            exp_in_place(e, s);
            e.iter_mut().for_each(|v| *v *= norm);
        }
    }
}

/// Gram–Schmidt (twice, for stability) on the rows of a square Gaussian block: orthonormal rows
/// with probability 1.
fn orthonormalize(mut rows: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    for i in 0..rows.len() {
        for _ in 0..2 {
            for j in 0..i {
                let dot: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
                let (done, rest) = rows.split_at_mut(i);
                rest[0]
                    .iter_mut()
                    .zip(&done[j])
                    .for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = rows[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        rows[i].iter_mut().for_each(|x| *x /= norm);
    }
    rows
}

impl<T: Element> FeatureMap<T> for Favor<T> {
    fn input_dim(&self) -> usize {
        self.d
    }
    fn feature_dim(&self) -> usize {
        self.m
    }
    /// The unbiased features, exponentials in f64.
    fn map_into(&self, x: &[T], out: &mut [T]) {
        let out = &mut out[..x.len() / self.d * self.m];
        self.exponents(x, out);
        let norm = 1.0 / (self.m as f64).sqrt();
        out.iter_mut()
            .for_each(|v| *v = T::from_f64(v.to_f64().exp() * norm));
    }
    fn map_queries_into(&self, x: &[T], out: &mut [T]) {
        let out = &mut out[..x.len() / self.d * self.m];
        self.exponents(x, out);
        self.exponentiate(out, row_max);
    }
    fn map_keys_into(&self, x: &[T], out: &mut [T]) {
        let out = &mut out[..x.len() / self.d * self.m];
        self.exponents(x, out);
        let shift = T::from_f64(self.key_shift);
        self.exponentiate(out, |_| shift);
    }
    fn requires_sum_normalization(&self) -> bool {
        true
    }
    fn backward_into(&self, x: &[T], features: &[T], grad: &[T], grad_x: &mut [T]) -> bool {
        // f = exp(ω·x − s²|x|²/2 − shift)/√m with the shift held constant:
        // ∂f/∂x = f (ω − s² x), so dx = Ωᵀ (g ⊙ f) − s² x Σ (g ⊙ f).
        let rows = x.len() / self.d;
        let gf: Vec<T> = grad.iter().zip(features).map(|(&g, &f)| g * f).collect();
        let mut dx = vec![T::ZERO; rows * self.d];
        gemm_ab(&mut dx, &gf, &self.w, rows, self.d, self.m);
        let s2 = T::from_f64(self.input_scale_sq);
        for (((dst, dx), x), gf) in grad_x
            .chunks_exact_mut(self.d)
            .zip(dx.chunks_exact(self.d))
            .zip(x.chunks_exact(self.d))
            .zip(gf.chunks_exact(self.m))
        {
            let total = gf.iter().fold(T::ZERO, |a, &b| a + b);
            for ((o, &a), &xi) in dst.iter_mut().zip(dx).zip(x) {
                *o += a - s2 * xi * total;
            }
        }
        true
    }
    /// Positive random features.
    fn nonnegative_weights(&self) -> bool {
        true
    }
    fn polynomial_degree(&self) -> Option<u32> {
        None
    }
    /// One `d × m` projection and `m` exponentials (counted as 10 FLOPs each).
    fn flops_per_row(&self) -> f64 {
        2.0 * (self.d * self.m) as f64 + 10.0 * self.m as f64
    }
}

impl<T> Favor<T> {
    /// The constant all key features are divided by, as a natural logarithm.
    pub fn key_stabilizer(&self) -> f64 {
        self.key_shift
    }
}
