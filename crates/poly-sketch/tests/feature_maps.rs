//! Feature maps: exactness of x ⊗ x, and unbiasedness of PolySketch (statistical, explicit bounds).

use poly_sketch::{ExactDegree2, FeatureMap, PolySketch, SketchScale};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn random_vec(seed: u64, d: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..d).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Two unit vectors with inner product `c`.
fn pair(d: usize, c: f64) -> (Vec<f64>, Vec<f64>) {
    let normalize = |v: Vec<f64>| {
        let n = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let x = normalize(random_vec(1, d));
    let z = random_vec(2, d);
    let along = dot(&z, &x);
    let z = normalize(z.iter().zip(&x).map(|(z, x)| z - along * x).collect());
    let y = x
        .iter()
        .zip(&z)
        .map(|(x, z)| c * x + (1.0 - c * c).sqrt() * z)
        .collect();
    (x, y)
}

#[test]
fn exact_degree2_features_reproduce_the_kernel() {
    for d in [1, 2, 5, 16] {
        let (x, y) = (random_vec(d as u64, d), random_vec(d as u64 + 100, d));
        let map = ExactDegree2::new(d);
        assert_eq!(FeatureMap::<f64>::feature_dim(&map), d * (d + 1) / 2);
        let fx = map.map_rows(&x).unwrap();
        let fy = map.map_rows(&y).unwrap();
        assert!((dot(&fx, &fy) - dot(&x, &y).powi(2)).abs() < 1e-12);
    }
}

/// Mean and standard error of `⟨φ(x), φ(y)⟩` over `seeds` independent sketches.
fn estimate(
    x: &[f64],
    y: &[f64],
    degree: u32,
    r: usize,
    seeds: u64,
    scale: SketchScale,
) -> (f64, f64, f64) {
    let values: Vec<f64> = (0..seeds)
        .map(|seed| {
            let map = PolySketch::<f64>::new(x.len(), degree, r, 1000 + seed, scale).unwrap();
            dot(&map.map_rows(x).unwrap(), &map.map_rows(y).unwrap())
        })
        .collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt(), var)
}

#[test]
fn polysketch_is_unbiased_within_four_standard_errors() {
    let (x, y) = pair(8, 0.8);
    for degree in [2, 3, 4, 5] {
        let target = 0.8f64.powi(degree as i32);
        let (mean, se, _) = estimate(&x, &y, degree, 16, 600, SketchScale::Unbiased);
        assert!(
            (mean - target).abs() <= 4.0 * se,
            "degree {degree}: mean {mean} vs {target} (se {se})"
        );
    }
}

#[test]
fn polysketch_variance_falls_like_one_over_r() {
    let (x, y) = pair(8, 0.6);
    for degree in [2, 4] {
        let (_, _, var8) = estimate(&x, &y, degree, 8, 600, SketchScale::Unbiased);
        let (_, _, var32) = estimate(&x, &y, degree, 32, 600, SketchScale::Unbiased);
        let ratio = var8 / var32;
        // 1/r predicts 4; sample variances of 600 draws of heavy-tailed products scatter widely.
        assert!(
            (2.0..8.0).contains(&ratio),
            "degree {degree}: var(r=8)/var(r=32) = {ratio}"
        );
    }
}

#[test]
fn reference_scale_estimates_the_kernel_over_r() {
    let (x, y) = pair(8, 0.9);
    let r = 16;
    let (mean, se, _) = estimate(&x, &y, 2, r, 600, SketchScale::Reference);
    let target = 0.81 / r as f64;
    assert!((mean - target).abs() <= 4.0 * se, "mean {mean} vs {target}");
}

#[test]
fn degree_one_is_the_identity_and_bad_parameters_are_errors() {
    let x = random_vec(5, 6);
    let map = PolySketch::<f64>::new(6, 1, 32, 0, SketchScale::Unbiased).unwrap();
    assert_eq!(map.map_rows(&x).unwrap(), x);
    assert!(PolySketch::<f64>::new(6, 0, 32, 0, SketchScale::Unbiased).is_err());
    assert!(PolySketch::<f64>::new(6, 2, 0, 0, SketchScale::Unbiased).is_err());
    assert!(PolySketch::<f64>::new(0, 2, 4, 0, SketchScale::Unbiased).is_err());
    let map = PolySketch::<f64>::new(6, 2, 4, 0, SketchScale::Unbiased).unwrap();
    assert!(map.map_rows(&x[..5]).is_err());
}

#[test]
fn same_seed_same_features() {
    let x = random_vec(9, 12);
    let a = PolySketch::<f32>::new(4, 4, 8, 77, SketchScale::Unbiased).unwrap();
    let b = PolySketch::<f32>::new(4, 4, 8, 77, SketchScale::Unbiased).unwrap();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    assert_eq!(a.map_rows(&x32).unwrap(), b.map_rows(&x32).unwrap());
}
