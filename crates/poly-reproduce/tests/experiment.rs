//! The Song–Xu–Yin experiment: closed form against the engine, and the paper's claim at the
//! sizes of docs/math.md §5.2–§5.3.

use poly_core::{AttentionConfig, Tensor, attention};
use poly_data::datasets::{Class, RatioDataset, SelfDataset, SignPlacement, sample_seed};
use poly_reproduce::closed_form::ClosedForm;
use poly_reproduce::network::{NetworkKernel, NetworkWeights, forward};
use poly_reproduce::runner::{CellResult, Dataset, run_dense, run_ratio_closed_form};

fn kernels() -> Vec<NetworkKernel> {
    let mut k: Vec<NetworkKernel> = [1, 2, 4, 8, 12, 16, 32]
        .map(NetworkKernel::Polynomial)
        .to_vec();
    k.push(NetworkKernel::Softmax { scale: 1.0 });
    k.push(NetworkKernel::Linear);
    k
}

#[test]
fn closed_form_matches_the_engine() {
    for signs in [
        SignPlacement::AllButPlanted,
        SignPlacement::All,
        SignPlacement::None,
    ] {
        let ds = RatioDataset::new(300, 5, 7.0, signs).unwrap();
        for kernel in kernels() {
            for (class, index) in [(Class::D0, 0), (Class::D1, 1), (Class::D1, 2)] {
                let seed = sample_seed(42, class, index);
                let sample = ds.sample(class, seed);
                let dense =
                    forward(&sample, ds.n, ds.d, kernel, &NetworkWeights::default()).unwrap();
                let (planted, sign_draw) = ds.draw(class, seed);
                let closed = ds.closed_form_readout(kernel, planted, &sign_draw);
                assert!(
                    (dense.t - closed).abs() <= 1e-10 * closed.abs().max(1.0),
                    "{signs:?} {kernel:?} {class:?}: engine {} vs closed form {closed}",
                    dense.t
                );
                if let Some(w) = dense.planted_weight {
                    assert!((w - ds.planted_weight(kernel)).abs() < 1e-12);
                }
            }
        }
    }
}

#[test]
fn every_row_puts_the_predicted_weight_on_the_planted_token() {
    let ds = RatioDataset::new(4096, 16, 16.0, SignPlacement::AllButPlanted).unwrap();
    let sample = ds.sample(Class::D1, 5);
    let (k_star, _) = sample.planted.unwrap();
    let a = Tensor::from_vec([1, 1, 4096, 16], sample.a1.clone()).unwrap();
    let mut indicator = vec![0.0; 4096];
    indicator[k_star] = 1.0;
    let v = Tensor::from_vec([1, 1, 4096, 1], indicator).unwrap();
    for beta in [1, 4, 16, 64] {
        let weights = attention(
            a.view(),
            a.view(),
            v.view(),
            &AttentionConfig::polynomial(beta),
        )
        .unwrap();
        let rho_beta = ds.rho().powi(beta as i32);
        let expected = rho_beta / (rho_beta + 4095.0);
        for (j, &w) in weights.as_slice().iter().enumerate() {
            if j != k_star {
                assert!(
                    (w - expected).abs() <= 1e-9,
                    "β {beta} row {j}: {w} vs {expected}"
                );
            }
        }
    }
}

fn cell(cells: &[CellResult], kernel: NetworkKernel) -> &CellResult {
    cells.iter().find(|c| c.kernel == kernel).unwrap()
}

#[test]
fn ratio_dataset_high_degree_separates_and_low_degree_cannot() {
    let ds = RatioDataset::new(4096, 16, 16.0, SignPlacement::AllButPlanted).unwrap();
    let cells = run_ratio_closed_form(&ds, &kernels(), 2000, 7);
    for beta in [1, 2] {
        let c = cell(&cells, NetworkKernel::Polynomial(beta));
        assert!(
            c.best_threshold_accuracy <= 0.6,
            "β {beta}: {}",
            c.best_threshold_accuracy
        );
    }
    for beta in [12, 16, 32] {
        let c = cell(&cells, NetworkKernel::Polynomial(beta));
        assert!(
            c.best_threshold_accuracy >= 0.99,
            "β {beta}: {}",
            c.best_threshold_accuracy
        );
    }
    for beta in [16, 32] {
        let c = cell(&cells, NetworkKernel::Polynomial(beta));
        assert!(
            c.fixed_threshold_accuracy >= 0.95,
            "β {beta}: {}",
            c.fixed_threshold_accuracy
        );
    }
    for beta in [1, 2, 4, 8] {
        let c = cell(&cells, NetworkKernel::Polynomial(beta));
        assert!(
            c.fixed_threshold_accuracy <= 0.6,
            "β {beta}: {}",
            c.fixed_threshold_accuracy
        );
    }
    assert!(cell(&cells, NetworkKernel::Softmax { scale: 1.0 }).best_threshold_accuracy >= 0.99);
    assert!(cell(&cells, NetworkKernel::Linear).best_threshold_accuracy <= 0.6);
}

#[test]
fn self_dataset_accuracy_rises_with_degree() {
    let ds = SelfDataset::new(512, 4, 6.0).unwrap();
    let kernels = [2, 4, 8, 16].map(NetworkKernel::Polynomial);
    let cells = run_dense(
        Dataset::SelfAttention(ds),
        &kernels,
        200,
        11,
        &NetworkWeights::default(),
    )
    .unwrap();
    let acc: Vec<f64> = cells.iter().map(|c| c.best_threshold_accuracy).collect();
    // Rising, up to the sampling noise of 200 test samples (standard error ≤ 0.035).
    assert!(acc[0] < acc[2], "{acc:?}");
    assert!(acc[1] <= acc[2] + 0.05, "{acc:?}");
    assert!(acc[2] >= 0.97 && acc[3] >= 0.97, "{acc:?}");
    assert!(cells.iter().all(|c| c.ill_conditioned == 0));
}

#[test]
fn degree_1024_is_finite() {
    let ds = RatioDataset::new(256, 8, 4.0, SignPlacement::AllButPlanted).unwrap();
    let cells = run_dense(
        Dataset::Ratio(ds),
        &[NetworkKernel::Polynomial(1024)],
        6,
        3,
        &NetworkWeights::default(),
    )
    .unwrap();
    let c = &cells[0];
    assert!(c.t0.iter().chain(&c.t1).all(|t| t.is_finite()));
    assert!((c.planted_weight.unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn bad_parameters_are_errors() {
    assert!(RatioDataset::new(4096, 16, 1.0, SignPlacement::All).is_err());
    assert!(RatioDataset::new(1, 16, 4.0, SignPlacement::All).is_err());
    assert!(SelfDataset::new(16, 0, 4.0).is_err());
    let ds = RatioDataset::new(16, 2, 4.0, SignPlacement::All).unwrap();
    let err = forward(
        &ds.sample(Class::D0, 1),
        16,
        2,
        NetworkKernel::Polynomial(0),
        &NetworkWeights::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("degree"), "{err}");
}

/// Training through the exact backward lowers the training loss and, on R-self, a high degree
/// ends above the linear twin on held-out samples.
#[test]
fn training_lowers_the_loss_and_a_high_degree_beats_the_linear_twin() {
    use poly_reproduce::training::{TrainKernel, TrainPlan, train};
    let plan = TrainPlan {
        n: 16,
        d: 4,
        b: 6.0,
        train_per_class: 48,
        test_per_class: 64,
        steps: 40,
        eval_every: 5,
        learning_rate: 0.02,
        kernels: vec![TrainKernel::Linear, TrainKernel::Polynomial(8)],
    };
    let curves = train(&plan).unwrap();
    for c in &curves {
        assert_eq!(c.steps, (0..=40).step_by(5).collect::<Vec<_>>());
        let (first, last) = (c.train_loss[0], *c.train_loss.last().unwrap());
        assert!(last < 0.9 * first, "{:?}: loss {first} -> {last}", c.kernel);
    }
    let last = |i: usize| *curves[i].test_accuracy.last().unwrap();
    assert!(
        last(1) > last(0) + 0.1,
        "poly8 {} vs linear {}",
        last(1),
        last(0)
    );
    // Plans that would divide by zero (or by no samples) are errors, not panics or NaN.
    for bad in [
        TrainPlan {
            eval_every: 0,
            ..plan.clone()
        },
        TrainPlan {
            train_per_class: 0,
            ..plan.clone()
        },
    ] {
        assert!(matches!(
            train(&bad),
            Err(poly_core::Error::InvalidParameter { .. })
        ));
    }
}
