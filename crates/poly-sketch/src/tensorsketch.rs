//! TensorSketch (Pham & Pagh; docs/math.md §3.3): `p` independent CountSketches `C_i` of size `D`
//! combined by circular convolution, `φ(x) = IFFT(FFT(C₁x) ⊙ … ⊙ FFT(C_p x))`. The convolution of
//! CountSketches is the CountSketch of `x^{⊗p}` (hash `Σ h_i mod D`, sign `Π s_i`), so
//! `E⟨φ(x), φ(y)⟩ = (x·y)^p`. Costs `O(p(d + D log D))` per row; the real-FFT plans are built once.

use crate::feature_map::FeatureMap;
use poly_core::{Element, Result, check_elements};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::marker::PhantomData;
use std::sync::Arc;

/// One CountSketch: coordinate `j` of the input goes to bucket `hash[j]` with sign `sign[j]`.
#[derive(Clone, Debug)]
struct CountSketch {
    hash: Vec<usize>,
    sign: Vec<f64>,
}

impl CountSketch {
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for ((&h, &s), &x) in self.hash.iter().zip(&self.sign).zip(x) {
            out[h] += s * x;
        }
    }
}

/// A TensorSketch of degree `p` and size `D` for inputs of dimension `d`. Computes in f64 (the
/// FFT round trip would otherwise cost f32 inputs several bits).
#[derive(Clone)]
pub struct TensorSketch<T> {
    d: usize,
    size: usize,
    degree: u32,
    sketches: Vec<CountSketch>,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
    _element: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TensorSketch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorSketch")
            .field("d", &self.d)
            .field("size", &self.size)
            .field("degree", &self.degree)
            .finish()
    }
}

impl<T: Element> TensorSketch<T> {
    /// Draws the hashes and signs from `seed` and plans the FFTs of length `size`.
    ///
    /// # Errors
    /// Degree 0, `d = 0` or size 0.
    pub fn new(d: usize, degree: u32, size: usize, seed: u64) -> Result<Self> {
        crate::polysketch::check_sketch_parameters(d, degree, size)?;
        // p hashes and signs of length d; per mapped row, p + 1 spectra of D/2 + 1 complex values.
        check_elements("TensorSketch hashes", &[degree as usize, d], 16)?;
        check_elements("TensorSketch spectra", &[degree as usize + 1, size, 2], 8)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let sketches = (0..degree)
            .map(|_| CountSketch {
                hash: (0..d).map(|_| rng.random_range(0..size)).collect(),
                sign: (0..d)
                    .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                    .collect(),
            })
            .collect();
        let mut planner = RealFftPlanner::<f64>::new();
        Ok(TensorSketch {
            d,
            size,
            degree,
            sketches,
            forward: planner.plan_fft_forward(size),
            inverse: planner.plan_fft_inverse(size),
            _element: PhantomData,
        })
    }
}

impl<T: Element> FeatureMap<T> for TensorSketch<T> {
    fn input_dim(&self) -> usize {
        self.d
    }
    fn feature_dim(&self) -> usize {
        self.size
    }
    fn map_into(&self, x: &[T], out: &mut [T]) {
        let n = self.size;
        let mut row = vec![0.0; self.d];
        let mut bucket = vec![0.0; n];
        let mut spectrum = vec![Complex::default(); n / 2 + 1];
        let mut product = spectrum.clone();
        let mut scratch = vec![Complex::default(); self.forward.get_scratch_len()];
        let mut inverse_scratch = vec![Complex::default(); self.inverse.get_scratch_len()];
        for (x, out) in x.chunks_exact(self.d).zip(out.chunks_exact_mut(n)) {
            row.iter_mut().zip(x).for_each(|(r, x)| *r = x.to_f64());
            if self.degree == 1 {
                self.sketches[0].apply(&row, &mut bucket);
                out.iter_mut()
                    .zip(&bucket)
                    .for_each(|(o, b)| *o = T::from_f64(*b));
                continue;
            }
            for (i, sketch) in self.sketches.iter().enumerate() {
                sketch.apply(&row, &mut bucket);
                let target = if i == 0 { &mut product } else { &mut spectrum };
                self.forward
                    .process_with_scratch(&mut bucket, target, &mut scratch)
                    .expect("buffer lengths match the plan");
                if i > 0 {
                    product.iter_mut().zip(&spectrum).for_each(|(p, s)| *p *= s);
                }
            }
            // Spectra of real signals: the DC and Nyquist bins are real up to rounding.
            product[0].im = 0.0;
            if n.is_multiple_of(2) {
                product[n / 2].im = 0.0;
            }
            self.inverse
                .process_with_scratch(&mut product, &mut bucket, &mut inverse_scratch)
                .expect("buffer lengths match the plan");
            let unscale = 1.0 / n as f64;
            out.iter_mut()
                .zip(&bucket)
                .for_each(|(o, b)| *o = T::from_f64(b * unscale));
        }
    }
    fn polynomial_degree(&self) -> Option<u32> {
        Some(self.degree)
    }
    fn backward_into(&self, x: &[T], _features: &[T], grad: &[T], grad_x: &mut [T]) -> bool {
        // φ = c₁ ⊛ … ⊛ c_p with c_i = C_i x. The adjoint of convolving c_i with u = ⊛_{j≠i} c_j
        // is correlating with u: DFT(dc_i) = conj(Π_{j≠i} F_j) · DFT(g), then dx = Σ_i C_iᵀ dc_i.
        let n = self.size;
        let p = self.sketches.len();
        let bins = n / 2 + 1;
        let mut row = vec![0.0; self.d];
        let mut bucket = vec![0.0; n];
        let mut spectra = vec![vec![Complex::default(); bins]; p];
        let mut g_spectrum = vec![Complex::default(); bins];
        let mut product = vec![Complex::default(); bins];
        let mut scratch = vec![Complex::default(); self.forward.get_scratch_len()];
        let mut inverse_scratch = vec![Complex::default(); self.inverse.get_scratch_len()];
        for ((x, g), dx) in x
            .chunks_exact(self.d)
            .zip(grad.chunks_exact(n))
            .zip(grad_x.chunks_exact_mut(self.d))
        {
            row.iter_mut().zip(x).for_each(|(r, x)| *r = x.to_f64());
            if p == 1 {
                let sketch = &self.sketches[0];
                for ((dx, &h), &s) in dx.iter_mut().zip(&sketch.hash).zip(&sketch.sign) {
                    *dx += T::from_f64(s * g[h].to_f64());
                }
                continue;
            }
            for (sketch, spectrum) in self.sketches.iter().zip(&mut spectra) {
                sketch.apply(&row, &mut bucket);
                self.forward
                    .process_with_scratch(&mut bucket, spectrum, &mut scratch)
                    .expect("buffer lengths match the plan");
            }
            bucket.iter_mut().zip(g).for_each(|(b, g)| *b = g.to_f64());
            self.forward
                .process_with_scratch(&mut bucket, &mut g_spectrum, &mut scratch)
                .expect("buffer lengths match the plan");
            for (i, sketch) in self.sketches.iter().enumerate() {
                product.copy_from_slice(&g_spectrum);
                for (j, spectrum) in spectra.iter().enumerate() {
                    if j != i {
                        product
                            .iter_mut()
                            .zip(spectrum)
                            .for_each(|(a, s)| *a *= s.conj());
                    }
                }
                product[0].im = 0.0;
                if n.is_multiple_of(2) {
                    product[n / 2].im = 0.0;
                }
                self.inverse
                    .process_with_scratch(&mut product, &mut bucket, &mut inverse_scratch)
                    .expect("buffer lengths match the plan");
                let unscale = 1.0 / n as f64;
                for ((dx, &h), &s) in dx.iter_mut().zip(&sketch.hash).zip(&sketch.sign) {
                    *dx += T::from_f64(s * bucket[h] * unscale);
                }
            }
        }
        true
    }
    /// `p` CountSketches (`2d`), `p` forward and one inverse real FFT (`≈ 2.5·D·log₂D` each) and
    /// `p − 1` spectrum products (`6` per bin).
    fn flops_per_row(&self) -> f64 {
        let (p, d, n) = (self.degree as f64, self.d as f64, self.size as f64);
        let fft = 2.5 * n * n.log2().max(1.0);
        p * (2.0 * d) + (p + 1.0) * fft + (p - 1.0) * 6.0 * (n / 2.0 + 1.0)
    }
}
