//! Feature maps: exactness of x ⊗ x, and unbiasedness of every random map with a variance that
//! falls like 1/m (statistical, explicit bounds: 4 standard errors over ≥ 500 independent seeds).

use poly_sketch::{
    ExactDegree2, Favor, FeatureMap, MapKind, MapSpec, PolySketch, RandomMaclaurin, SketchScale,
    TensorSketch,
};
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
        let map = ExactDegree2::new(d).unwrap();
        assert_eq!(FeatureMap::<f64>::feature_dim(&map), d * (d + 1) / 2);
        let fx = map.map_rows(&x).unwrap();
        let fy = map.map_rows(&y).unwrap();
        assert!((dot(&fx, &fy) - dot(&x, &y).powi(2)).abs() < 1e-12);
    }
}

/// Mean, standard error and variance of `⟨φ(x), φ(y)⟩` over `seeds` independent draws.
fn estimate(
    x: &[f64],
    y: &[f64],
    degree: u32,
    r: usize,
    seeds: u64,
    scale: SketchScale,
) -> (f64, f64, f64) {
    estimate_with(x, y, seeds, |seed| {
        Box::new(PolySketch::<f64>::new(x.len(), degree, r, seed, scale).unwrap())
    })
}

fn estimate_with(
    x: &[f64],
    y: &[f64],
    seeds: u64,
    build: impl Fn(u64) -> Box<dyn FeatureMap<f64>>,
) -> (f64, f64, f64) {
    let values: Vec<f64> = (0..seeds)
        .map(|seed| {
            let map = build(1000 + seed);
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

/// Builds each random family at a size for the tests below.
fn family(
    kind: MapKind,
    d: usize,
    degree: u32,
    size: usize,
    seed: u64,
) -> Box<dyn FeatureMap<f64>> {
    match kind {
        MapKind::TensorSketch => Box::new(TensorSketch::<f64>::new(d, degree, size, seed).unwrap()),
        MapKind::RandomMaclaurin => {
            Box::new(RandomMaclaurin::<f64>::new(d, degree, size, seed).unwrap())
        }
        MapKind::Favor => Box::new(Favor::<f64>::new(d, size, seed).unwrap()),
        _ => MapSpec::new(kind, degree, size, seed).build(d).unwrap(),
    }
}

/// The kernel each family estimates for unit-norm inputs with inner product `c`.
fn kernel(kind: MapKind, d: usize, degree: u32, c: f64) -> f64 {
    match kind {
        MapKind::Favor => (c / (d as f64).sqrt()).exp(),
        _ => c.powi(degree as i32),
    }
}

#[test]
fn tensorsketch_maclaurin_and_favor_are_unbiased_within_four_standard_errors() {
    let d = 8;
    let (x, y) = pair(d, 0.7);
    for kind in [
        MapKind::TensorSketch,
        MapKind::RandomMaclaurin,
        MapKind::Favor,
    ] {
        for degree in [1, 2, 3, 4] {
            if kind == MapKind::Favor && degree > 1 {
                continue;
            }
            let target = kernel(kind, d, degree, 0.7);
            let (mean, se, _) =
                estimate_with(&x, &y, 1000, |seed| family(kind, d, degree, 64, seed));
            assert!(
                (mean - target).abs() <= 4.0 * se,
                "{kind:?} degree {degree}: mean {mean} vs {target} (se {se})"
            );
            // The bound must be able to fail: a bias of half the kernel value would be caught.
            assert!(
                4.0 * se < 0.5 * target,
                "{kind:?} degree {degree}: se {se} too loose"
            );
        }
    }
}

#[test]
fn tensorsketch_maclaurin_and_favor_variance_falls_like_one_over_m() {
    let d = 16;
    let (x, y) = pair(d, 0.6);
    for (kind, degree) in [
        (MapKind::TensorSketch, 2),
        (MapKind::TensorSketch, 3),
        (MapKind::RandomMaclaurin, 2),
        (MapKind::RandomMaclaurin, 3),
        (MapKind::Favor, 1),
    ] {
        let (_, _, small) = estimate_with(&x, &y, 600, |seed| family(kind, d, degree, 16, seed));
        let (_, _, large) = estimate_with(&x, &y, 600, |seed| family(kind, d, degree, 64, seed));
        let ratio = small / large;
        assert!(
            (2.0..8.0).contains(&ratio),
            "{kind:?} degree {degree}: var(m=16)/var(m=64) = {ratio}"
        );
    }
}

#[test]
fn favor_features_are_positive_and_stabilizers_cancel_under_sum() {
    let d = 8;
    let map = Favor::<f64>::new(d, 32, 3).unwrap();
    // Large inputs: unstabilized exponentials would be far from 1, stabilized queries are ≤ 1/√m.
    let x: Vec<f64> = random_vec(4, 3 * d).iter().map(|v| v * 20.0).collect();
    let mut stabilized = vec![0.0; 3 * 32];
    map.map_queries_into(&x, &mut stabilized);
    let plain = map.map_rows(&x).unwrap();
    for (s_row, p_row) in stabilized.chunks(32).zip(plain.chunks(32)) {
        assert!(
            s_row
                .iter()
                .all(|&v| v > 0.0 && v <= 1.0 / 32f64.sqrt() + 1e-15)
        );
        // One factor per row: the ratios are all equal.
        let ratio = s_row[0] / p_row[0];
        for (s, p) in s_row.iter().zip(p_row) {
            assert!((s / p - ratio).abs() <= 1e-12 * ratio);
        }
    }
    let mut keys = vec![0.0; 3 * 32];
    map.map_keys_into(&x, &mut keys);
    let factor = (-map.key_stabilizer()).exp();
    for (k, p) in keys.iter().zip(&plain) {
        assert!((k - p * factor).abs() <= 1e-12 * p * factor);
    }
}

#[test]
fn every_family_rejects_zero_sizes_and_degrees() {
    assert!(TensorSketch::<f64>::new(4, 0, 8, 0).is_err());
    assert!(TensorSketch::<f64>::new(4, 2, 0, 0).is_err());
    assert!(RandomMaclaurin::<f64>::new(4, 0, 8, 0).is_err());
    assert!(RandomMaclaurin::<f64>::new(0, 2, 8, 0).is_err());
    assert!(Favor::<f64>::new(4, 0, 0).is_err());
    assert!(Favor::<f64>::new(0, 8, 0).is_err());
    let exact_wrong_degree = MapSpec::new(MapKind::Exact2, 3, 0, 0);
    assert!(exact_wrong_degree.build::<f64>(4).is_err());
}
