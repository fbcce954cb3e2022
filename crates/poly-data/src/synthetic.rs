//! Seeded synthetic tensors for examples, benchmarks and tests.

use poly_core::{Element, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A `[batch, heads, seq, dim]` tensor of i.i.d. uniform values in `[low, high)`.
///
/// The same seed gives the same tensor on every machine and thread count.
pub fn uniform<T: Element>(shape: Shape, low: f64, high: f64, seed: u64) -> Tensor<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = shape.iter().product();
    let data = (0..len)
        .map(|_| T::from_f64(rng.random_range(low..high)))
        .collect();
    Tensor::from_vec(shape, data).expect("length is the product of the shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_in_range() {
        let a = uniform::<f32>([1, 2, 30, 4], -1.0, 1.0, 7);
        let b = uniform::<f32>([1, 2, 30, 4], -1.0, 1.0, 7);
        let c = uniform::<f32>([1, 2, 30, 4], -1.0, 1.0, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.as_slice().iter().all(|&x| (-1.0..1.0).contains(&x)));
        let mean = a.as_slice().iter().map(|&x| x as f64).sum::<f64>() / 240.0;
        // Standard error of the mean of 240 U(−1, 1) draws is 0.037: allow 4 of them.
        assert!(mean.abs() < 0.15, "mean {mean}");
    }
}
