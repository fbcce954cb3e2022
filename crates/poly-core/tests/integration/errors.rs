//! Every bad input is a typed error naming what to fix; nothing panics or returns NaN.

use crate::common::{Data, random_tensor, rng};
use poly_core::{
    AttentionConfig, Error, Mask, Normalization, Tensor, TensorName, TensorRef, Threads, attention,
    attention_forward, attention_into, reference_attention,
};
use std::num::NonZeroUsize;

fn qkv(shapes: [[usize; 4]; 3]) -> [Tensor<f32>; 3] {
    let mut r = rng(31);
    shapes.map(|s| random_tensor::<f32>(&mut r, s, Data::Signed))
}

fn run(t: &[Tensor<f32>; 3], cfg: &AttentionConfig) -> Error {
    let fast = attention(t[0].view(), t[1].view(), t[2].view(), cfg).unwrap_err();
    let slow = reference_attention(t[0].view(), t[1].view(), t[2].view(), cfg).unwrap_err();
    assert_eq!(std::mem::discriminant(&fast), std::mem::discriminant(&slow));
    fast
}

#[test]
fn shape_mismatches_name_tensor_and_axis() {
    let cfg = AttentionConfig::polynomial(2);
    let cases = [
        (
            // k's head count may divide q's (grouped-query attention, tests in grouped_heads.rs);
            // v's must equal k's.
            [[1, 2, 4, 8], [1, 2, 4, 8], [1, 3, 4, 8]],
            TensorName::Value,
            "heads",
            2,
            3,
        ),
        (
            [[1, 2, 4, 8], [1, 2, 4, 7], [1, 2, 4, 8]],
            TensorName::Key,
            "dim",
            8,
            7,
        ),
        (
            [[2, 2, 4, 8], [1, 2, 4, 8], [1, 2, 4, 8]],
            TensorName::Key,
            "batch",
            2,
            1,
        ),
        (
            [[1, 2, 4, 8], [1, 2, 4, 8], [1, 2, 5, 8]],
            TensorName::Value,
            "seq",
            4,
            5,
        ),
    ];
    for (shapes, tensor, axis, expected, found) in cases {
        let err = run(&qkv(shapes), &cfg);
        assert_eq!(
            err,
            Error::ShapeMismatch {
                tensor,
                axis,
                expected,
                found
            }
        );
        assert!(err.to_string().contains(axis));
    }
}

#[test]
fn empty_dimensions_are_rejected() {
    let cfg = AttentionConfig::polynomial(2);
    let err = run(&qkv([[1, 1, 0, 4], [1, 1, 3, 4], [1, 1, 3, 4]]), &cfg);
    assert_eq!(
        err,
        Error::EmptyDimension {
            tensor: TensorName::Query,
            axis: "seq"
        }
    );
    let err = run(&qkv([[1, 1, 3, 4], [1, 1, 3, 4], [1, 1, 3, 0]]), &cfg);
    assert_eq!(
        err,
        Error::EmptyDimension {
            tensor: TensorName::Value,
            axis: "dim"
        }
    );
}

#[test]
fn bad_parameters_are_rejected() {
    let t = qkv([[1, 1, 3, 4], [1, 1, 3, 4], [1, 1, 3, 4]]);
    let cases = [
        (AttentionConfig::polynomial(0), "degree"),
        (AttentionConfig::polynomial(2).with_scale(f64::NAN), "scale"),
        (AttentionConfig::polynomial(2).with_scale(0.0), "scale"),
        (
            AttentionConfig::polynomial(2).with_normalization(Normalization::OnePlusSum(-1.0)),
            "norm-bias",
        ),
    ];
    for (cfg, name) in cases {
        match run(&t, &cfg) {
            Error::InvalidParameter { name: got, .. } => assert_eq!(got, name),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn non_finite_inputs_name_the_tensor_and_first_index() {
    let mut t = qkv([[2, 2, 5, 3], [2, 2, 5, 3], [2, 2, 5, 2]]);
    let mut data = t[2].as_slice().to_vec();
    data[20 + 3 * 2 + 1] = f32::INFINITY; // flat 27 = [batch 1, head 0, seq 3, dim 1]
    data[30] = f32::NAN;
    t[2] = Tensor::from_vec([2, 2, 5, 2], data).unwrap();
    let err = run(&t, &AttentionConfig::polynomial(2));
    assert_eq!(
        err,
        Error::NonFinite {
            tensor: TensorName::Value,
            index: [1, 0, 3, 1],
            value: f64::INFINITY
        }
    );
    let mut data = t[0].as_slice().to_vec();
    data[4] = f32::NEG_INFINITY;
    t[0] = Tensor::from_vec([2, 2, 5, 3], data).unwrap();
    match run(&t, &AttentionConfig::softmax()) {
        Error::NonFinite {
            tensor: TensorName::Query,
            index: [0, 0, 1, 1],
            ..
        } => {}
        other => panic!("{other}"),
    }
}

/// The engines scan for non-finite values in blocks on their threads; the error must still be
/// the first tensor's first bad index, whichever block a thread reaches first.
#[test]
fn non_finite_values_in_several_blocks_report_the_first_at_every_thread_count() {
    // 2 · 1100 · 64 = 140 800 elements per tensor: three of the scan's 65 536-element blocks.
    let shape = [1, 2, 1100, 64];
    let mut t = qkv([shape; 3]);
    t[1].as_mut_slice()[70_000] = f32::NAN; // block 1: [0, 0, 1093, 48]
    t[1].as_mut_slice()[140_000] = f32::INFINITY; // block 2, later
    t[2].as_mut_slice()[3] = f32::NAN; // an earlier index, but in a later tensor
    let expected = [0, 0, 70_000 / 64, 70_000 % 64];
    for threads in [1, 2, 3] {
        let cfg = AttentionConfig::softmax()
            .with_mask(Mask::Causal)
            .with_threads(Threads::Exact(NonZeroUsize::new(threads).unwrap()));
        let mut out = vec![0.0f32; t[0].as_slice().len()];
        let errors = [
            run(&t, &cfg),
            attention_into(t[0].view(), t[1].view(), t[2].view(), &cfg, &mut out).unwrap_err(),
            attention_forward(t[0].view(), t[1].view(), t[2].view(), &cfg).unwrap_err(),
        ];
        for err in errors {
            match err {
                Error::NonFinite {
                    tensor: TensorName::Key,
                    index,
                    value,
                } if index == expected && value.is_nan() => {}
                other => panic!("{threads} threads: {other}"),
            }
        }
    }
}

#[test]
fn buffer_lengths_are_checked() {
    let data = [1.0f32; 10];
    let err = TensorRef::new(TensorName::Key, [1, 1, 3, 4], &data).unwrap_err();
    assert_eq!(
        err,
        Error::BufferLength {
            tensor: TensorName::Key,
            expected: 12,
            found: 10
        }
    );
}

#[test]
fn all_zero_scores_under_sum_name_the_row() {
    let q = Tensor::from_vec(
        [1, 2, 3, 2],
        vec![
            1.0f32, 1.0, 0.0, 0.0, 1.0, 2.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.0,
        ],
    )
    .unwrap();
    let k = Tensor::from_vec(
        [1, 2, 2, 2],
        vec![1.0f32, 0.5, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    )
    .unwrap();
    let v = Tensor::from_vec([1, 2, 2, 1], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let err = run(&[q, k, v], &AttentionConfig::polynomial(4));
    assert_eq!(
        err,
        Error::AllScoresZero {
            at: poly_core::RowPosition::new(0, 0, 1)
        }
    );
}

#[test]
fn odd_degree_cancellation_is_reported_as_ill_conditioned() {
    // Scores +1 and −1 (degree 3): Σ w = 0 exactly; then 1 and −0.9999: ratio 5e-5 < 1e-3 (f32).
    let q = Tensor::from_vec([1, 1, 2, 1], vec![1.0f32, 1.0]).unwrap();
    let k = Tensor::from_vec([1, 1, 2, 1], vec![1.0f32, -1.0]).unwrap();
    let v = Tensor::from_vec([1, 1, 2, 1], vec![1.0f32, 2.0]).unwrap();
    match run(&[q.clone(), k, v.clone()], &AttentionConfig::polynomial(3)) {
        Error::IllConditionedNormalizer {
            at,
            ratio,
            tolerance,
        } => {
            assert_eq!(at.row, 0);
            assert!(ratio < tolerance);
        }
        other => panic!("{other}"),
    }
    let k = Tensor::from_vec([1, 1, 2, 1], vec![1.0f32, -0.99997]).unwrap();
    let err = run(
        &[q.clone(), k.clone(), v.clone()],
        &AttentionConfig::polynomial(1),
    );
    assert!(
        matches!(err, Error::IllConditionedNormalizer { .. }),
        "{err}"
    );
    // OnePlusSum(1) is well-posed on the same data; so is an even degree.
    let cfg = AttentionConfig::polynomial(1).with_normalization(Normalization::OnePlusSum(1.0));
    assert!(attention(q.view(), k.view(), v.view(), &cfg).is_ok());
    assert!(
        attention(
            q.view(),
            k.view(),
            v.view(),
            &AttentionConfig::polynomial(2)
        )
        .is_ok()
    );
    assert!(
        attention(
            q.view(),
            k.view(),
            v.view(),
            &AttentionConfig::polynomial(2).with_mask(Mask::Causal)
        )
        .is_ok()
    );
}

#[test]
fn row_errors_carry_their_batch_and_head() {
    let mut t = qkv([[2, 3, 70, 4], [2, 3, 900, 4], [2, 3, 900, 2]]);
    // Query rows 66 and 69 of batch 1, head 2 are zero, so all their scores are zero; the first
    // (in batch, head, row order) is reported, whichever thread finds which.
    let mut q = t[0].as_slice().to_vec();
    for row in [66, 69] {
        let start = ((3 + 2) * 70 + row) * 4;
        q[start..start + 4].fill(0.0);
    }
    t[0] = Tensor::from_vec([2, 3, 70, 4], q).unwrap();
    let at = poly_core::RowPosition::new(1, 2, 66);
    assert_eq!(
        run(&t, &AttentionConfig::polynomial(2)),
        Error::AllScoresZero { at }
    );
    assert_eq!(
        run(&t, &AttentionConfig::polynomial(2).with_mask(Mask::Causal)),
        Error::AllScoresZero { at }
    );
}

#[test]
fn head_views_out_of_range_are_errors() {
    let t = Tensor::from_vec([2, 3, 4, 5], vec![0.0f32; 120]).unwrap();
    assert_eq!(t.view().head(1, 2).unwrap().len(), 20);
    for (b, h) in [(2, 0), (0, 3), (usize::MAX, usize::MAX)] {
        assert!(matches!(
            t.view().head(b, h),
            Err(Error::InvalidParameter {
                name: "head index",
                ..
            })
        ));
    }
}

#[test]
fn tensors_beyond_the_budget_are_refused_before_allocation() {
    // 2^60 elements, and a shape whose element count overflows usize.
    assert!(matches!(
        Tensor::<f32>::zeros([1 << 20, 1 << 20, 1 << 20, 1]),
        Err(Error::ResourceLimit { what: "tensor", .. })
    ));
    assert!(matches!(
        Tensor::<f64>::zeros([usize::MAX, 2, 1, 1]),
        Err(Error::ResourceLimit {
            needed_bytes: u64::MAX,
            ..
        })
    ));
}

#[test]
fn an_output_far_larger_than_the_inputs_is_refused() {
    // q: n × 1, k: 1 × 1, v: 1 × n, with n chosen so that the n × n output is twice the budget
    // of this machine (n = 100 000 asks for 40 GB from 800 KB of input).
    let n = ((poly_core::memory_budget() / 2) as f64).sqrt().ceil() as usize + 1;
    let q = Tensor::from_vec([1, 1, n, 1], vec![0.5f32; n]).unwrap();
    let k = Tensor::from_vec([1, 1, 1, 1], vec![0.5f32]).unwrap();
    let v = Tensor::from_vec([1, 1, 1, n], vec![0.5f32; n]).unwrap();
    let needed = (n * n * 4) as u64;
    assert!(needed > poly_core::memory_budget());
    match poly_core::attention(
        q.view(),
        k.view(),
        v.view(),
        &AttentionConfig::polynomial(2),
    ) {
        Err(Error::ResourceLimit {
            what, needed_bytes, ..
        }) => assert_eq!((what, needed_bytes), ("attention output", needed)),
        other => panic!("{other:?}"),
    }
}
