//! Shared by the poly-sketch tests: seeded inputs and one small map of every family.

#![allow(dead_code)]

use poly_core::{Element, Normalization, Tensor};
use poly_sketch::{FeatureMap, MapKind, MapSpec};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub fn random<T: Element>(seed: u64, shape: [usize; 4]) -> Tensor<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..shape.iter().product())
        .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

pub fn random_vec(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A small map of one family, with the normalization it is tested under.
pub struct TestMap<T: Element> {
    pub kind: MapKind,
    pub map: Box<dyn FeatureMap<T>>,
    pub normalization: Normalization,
}

/// One map of every family for inputs of dimension `d` (small sizes keep dense references cheap).
pub fn every_map<T: poly_sketch::SketchElement>(d: usize) -> Vec<TestMap<T>> {
    MapKind::ALL
        .into_iter()
        .map(|kind| {
            let (degree, sketch_dim) = match kind {
                MapKind::PolySketch => (4, 8),
                MapKind::PolySketchTree => (3, 16),
                MapKind::TensorSketch => (3, 16),
                MapKind::RandomMaclaurin => (2, 16),
                MapKind::Favor => (1, 16),
                MapKind::Exact2 => (2, 0),
                other => panic!("no test sizes for {other:?}: add the new family here"),
            };
            let spec = MapSpec::new(kind, degree, sketch_dim, 5);
            let map = spec.build::<T>(d).unwrap();
            // Signed weights can cancel in a normalizer, which the engines then refuse (tested
            // by `signed_weights_that_cancel_are_refused`): on random data these small signed
            // maps would hit that, so their algebra is checked without a normalizer.
            let normalization = if kind == MapKind::Favor {
                Normalization::Sum
            } else if map.nonnegative_weights() {
                Normalization::OnePlusSum(1.0)
            } else {
                Normalization::None
            };
            TestMap {
                kind,
                map,
                normalization,
            }
        })
        .collect()
}
