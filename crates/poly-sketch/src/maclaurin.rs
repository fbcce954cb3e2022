//! Random Maclaurin features of pure degree `p` (Kar & Karnick; docs/math.md §3.4):
//! `φ_l(x) = D^{−1/2} ∏_{j=1..p} (w_{lj}·x)` with i.i.d. Rademacher vectors `w_{lj}`. Since
//! `E[(w·x)(w·y)] = x·y` for each independent factor, `E⟨φ(x), φ(y)⟩ = (x·y)^p`. Computed as `p`
//! GEMMs with `d × D` sign matrices and an elementwise product.

use crate::feature_map::FeatureMap;
use poly_core::primitives::{gemm_ab, gemm_abt};
use poly_core::{Element, Result, check_elements};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Random Maclaurin features of degree `p` and dimension `D` for inputs of dimension `d`.
#[derive(Clone, Debug)]
pub struct RandomMaclaurin<T> {
    d: usize,
    size: usize,
    degree: u32,
    /// `p` sign matrices, each `d × D` row-major.
    signs: Vec<Vec<T>>,
}

impl<T: Element> RandomMaclaurin<T> {
    /// Draws the sign matrices from `seed`.
    ///
    /// # Errors
    /// Degree 0, `d = 0` or size 0.
    pub fn new(d: usize, degree: u32, size: usize, seed: u64) -> Result<Self> {
        crate::polysketch::check_sketch_parameters(d, degree, size)?;
        check_elements(
            "RandomMaclaurin projections",
            &[degree as usize, d, size],
            size_of::<T>(),
        )?;
        let mut rng = StdRng::seed_from_u64(seed);
        let signs = (0..degree)
            .map(|_| {
                (0..d * size)
                    .map(|_| {
                        if rng.random::<bool>() {
                            T::ONE
                        } else {
                            -T::ONE
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(RandomMaclaurin {
            d,
            size,
            degree,
            signs,
        })
    }
}

impl<T: Element> FeatureMap<T> for RandomMaclaurin<T> {
    fn input_dim(&self) -> usize {
        self.d
    }
    fn feature_dim(&self) -> usize {
        self.size
    }
    fn map_into(&self, x: &[T], out: &mut [T]) {
        let rows = x.len() / self.d;
        let out = &mut out[..rows * self.size];
        let mut factor = vec![T::ZERO; rows * self.size];
        gemm_ab(out, x, &self.signs[0], rows, self.size, self.d);
        for w in &self.signs[1..] {
            gemm_ab(&mut factor, x, w, rows, self.size, self.d);
            out.iter_mut().zip(&factor).for_each(|(o, &f)| *o *= f);
        }
        let norm = T::from_f64(1.0 / (self.size as f64).sqrt());
        out.iter_mut().for_each(|o| *o *= norm);
    }
    fn polynomial_degree(&self) -> Option<u32> {
        Some(self.degree)
    }
    fn backward_into(&self, x: &[T], _features: &[T], grad: &[T], grad_x: &mut [T]) -> bool {
        // φ = c · Π_t (x W_t): the gradient through factor t is c · g ⊙ Π_{s≠t} (x W_s), taken
        // from prefix and suffix products (no division, so zero factors are exact).
        let (rows, size) = (x.len() / self.d, self.size);
        let projections: Vec<Vec<T>> = self
            .signs
            .iter()
            .map(|w| {
                let mut p = vec![T::ZERO; rows * size];
                gemm_ab(&mut p, x, w, rows, size, self.d);
                p
            })
            .collect();
        let norm = T::from_f64(1.0 / (size as f64).sqrt());
        // suffix[t] = Π_{s>t} P_s (elementwise); the prefix runs along the loop.
        let count = projections.len();
        let mut suffix = vec![vec![T::ONE; rows * size]; count];
        for t in (0..count.saturating_sub(1)).rev() {
            let (head, tail) = suffix.split_at_mut(t + 1);
            for ((s, &next), &p) in head[t].iter_mut().zip(&tail[0]).zip(&projections[t + 1]) {
                *s = next * p;
            }
        }
        let mut prefix = vec![T::ONE; rows * size];
        let mut through = vec![T::ZERO; rows * size];
        let mut dx = vec![T::ZERO; rows * self.d];
        for (t, w) in self.signs.iter().enumerate() {
            for (((o, &g), &a), &b) in through.iter_mut().zip(grad).zip(&prefix).zip(&suffix[t]) {
                *o = norm * g * a * b;
            }
            // dx += through · W_tᵀ (W_t is d × size).
            gemm_abt(&mut dx, &through, w, rows, self.d, size, T::ONE);
            grad_x.iter_mut().zip(&dx).for_each(|(a, &b)| *a += b);
            prefix
                .iter_mut()
                .zip(&projections[t])
                .for_each(|(a, &p)| *a *= p);
        }
        true
    }
    fn flops_per_row(&self) -> f64 {
        let (p, d, n) = (self.degree as f64, self.d as f64, self.size as f64);
        2.0 * p * d * n + p * n
    }
}
