//! The GEMM roofline: faer's f32 matrix multiply rate on this machine, measured in-process so that
//! attention kernels can be reported as a fraction of it.

use crate::timing::Timing;
use faer::{Accum, Mat, Par};
use std::time::Instant;

/// FLOPs of one `n × n × n` GEMM.
pub fn gemm_flops(n: usize) -> f64 {
    2.0 * (n as f64).powi(3)
}

/// Timed runs of the GEMM probe: its rate is that of the median run, as every timed cell of the
/// project reports its median, so a share of the GEMM rate compares like with like. (The best of
/// the runs, used until this was written, set a fast outlier of the yardstick against a typical
/// attention call: on the shared VM the 2-thread probe's runs spread 109–142 GFLOP/s within a
/// second, which lowered every share by up to the spread.)
pub const GEMM_PROBE_RUNS: usize = 5;

/// The GEMM probe's size: `n × n × n` with n = 2048, large enough for faer's full blocking.
pub const GEMM_PROBE_N: usize = 2048;

/// One GEMM probe: the size it multiplied and its timed runs (seconds per GEMM), so its rates
/// are always taken at the size it ran.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmProbe {
    /// The matrices were `n × n`.
    pub n: usize,
    /// The timed runs.
    pub timing: Timing,
}

impl GemmProbe {
    /// The rate of the median run (GFLOP/s): the yardstick.
    pub fn median_gflops(&self) -> f64 {
        gemm_flops(self.n) / self.timing.median / 1e9
    }

    /// The rate of the fastest run (GFLOP/s).
    pub fn best_gflops(&self) -> f64 {
        gemm_flops(self.n) / self.timing.min / 1e9
    }
}

/// Multiplies two `n × n` f32 matrices with faer on `threads` threads, `repeat` times after one
/// warm-up, and returns the rate of the median run in GFLOP/s.
pub fn gemm_rate_gflops(n: usize, threads: usize, repeat: usize) -> f64 {
    gemm_probe(n, threads, repeat).median_gflops()
}

/// The probe behind [`gemm_rate_gflops`], for a caller that also wants the fastest run.
pub fn gemm_probe(n: usize, threads: usize, repeat: usize) -> GemmProbe {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("rayon pool");
    pool.install(|| {
        let a = Mat::<f32>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 17) as f32 * 0.05 - 0.4);
        let b = Mat::<f32>::from_fn(n, n, |i, j| ((i * 5 + j * 11) % 13) as f32 * 0.07 - 0.4);
        let mut c = Mat::<f32>::zeros(n, n);
        let par = gemm_par(threads);
        gemm_into(&mut c, &a, &b, par);
        let seconds = (0..repeat.max(1))
            .map(|_| {
                let start = Instant::now();
                gemm_into(&mut c, &a, &b, par);
                start.elapsed().as_secs_f64()
            })
            .collect();
        GemmProbe {
            n,
            timing: Timing::from_seconds(seconds),
        }
    })
}

/// faer's parallelism for a standalone GEMM on `threads` threads.
pub fn gemm_par(threads: usize) -> Par {
    if threads <= 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    }
}

/// `c = a · b` with faer.
pub fn gemm_into(c: &mut Mat<f32>, a: &Mat<f32>, b: &Mat<f32>, par: Par) {
    faer::linalg::matmul::matmul(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0, par);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_is_correct_and_rate_is_positive() {
        let a = Mat::<f32>::from_fn(3, 3, |i, j| (i * 3 + j) as f32);
        let mut c = Mat::<f32>::zeros(3, 3);
        gemm_into(&mut c, &a, &a, Par::Seq);
        assert_eq!(c[(0, 0)], 0.0 * 0.0 + 1.0 * 3.0 + 2.0 * 6.0);
        assert_eq!(c[(2, 1)], 6.0 * 1.0 + 7.0 * 4.0 + 8.0 * 7.0);
        assert_eq!(gemm_flops(10), 2000.0);
        assert!(gemm_rate_gflops(32, 1, 1) > 0.0);
    }
}
