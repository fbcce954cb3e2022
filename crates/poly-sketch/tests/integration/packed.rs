//! Packed sequences in the linear engine: each sequence's rows equal linear attention over that
//! sequence alone (bit for bit: the state restarts at every boundary), row errors name the row
//! on the packed axis.

use crate::common::random;
use poly_core::{Error, Mask, Normalization, Sequences, Tensor};
use poly_sketch::{
    LinearAttentionConfig, MapKind, MapSpec, linear_attention, linear_attention_packed,
};

fn rows_of(x: &Tensor<f32>, rows: std::ops::Range<usize>) -> Tensor<f32> {
    x.view().rows(rows).unwrap()
}

#[test]
fn each_packed_sequence_equals_linear_attention_over_it_alone() {
    let lengths = [1, 15, 17, 40];
    let n: usize = lengths.iter().sum();
    let sequences = Sequences::from_lengths(&lengths).unwrap();
    let map = MapSpec::new(MapKind::PolySketch, 4, 8, 2)
        .build::<f32>(5)
        .unwrap();
    let q = random::<f32>(1, [2, 4, n, 5]);
    let k = random::<f32>(2, [2, 2, n, 5]);
    let v = random::<f32>(3, [2, 2, n, 3]);
    for (mask, local_exact) in [
        (Mask::None, false),
        (Mask::Causal, false),
        (Mask::Causal, true),
    ] {
        let cfg = LinearAttentionConfig::default()
            .with_mask(mask)
            .with_block(8)
            .with_local_exact(local_exact)
            .with_normalization(Normalization::Sum);
        let packed =
            linear_attention_packed(q.view(), k.view(), v.view(), map.as_ref(), &cfg, &sequences)
                .unwrap();
        let mut start = 0;
        for len in lengths {
            let rows = start..start + len;
            let (qs, ks, vs) = (
                rows_of(&q, rows.clone()),
                rows_of(&k, rows.clone()),
                rows_of(&v, rows.clone()),
            );
            let alone =
                linear_attention(qs.view(), ks.view(), vs.view(), map.as_ref(), &cfg).unwrap();
            assert_eq!(
                rows_of(&packed, rows).as_slice(),
                alone.as_slice(),
                "{mask:?} {local_exact} at {start}"
            );
            start += len;
        }
    }
}

#[test]
fn row_errors_and_bad_lengths_name_the_packed_row() {
    // Second sequence: keys x, −x cancel for an odd-degree signed sketch.
    let map = MapSpec::new(MapKind::TensorSketch, 3, 8, 1)
        .build::<f64>(1)
        .unwrap();
    let data = vec![0.5, 1.0, -1.0];
    let x = Tensor::from_vec([1, 1, 3, 1], data).unwrap();
    let ones = Tensor::from_vec([1, 1, 3, 1], vec![1.0; 3]).unwrap();
    let cfg = LinearAttentionConfig::default().with_normalization(Normalization::Sum);
    let sequences = Sequences::from_lengths(&[1, 2]).unwrap();
    let err = linear_attention_packed(
        ones.view(),
        x.view(),
        x.view(),
        map.as_ref(),
        &cfg,
        &sequences,
    )
    .unwrap_err();
    match err {
        Error::IllConditionedNormalizer { at, .. } => assert_eq!(at.row, 1),
        other => panic!("{other:?}"),
    }
    let short = Sequences::from_lengths(&[2]).unwrap();
    let err = linear_attention_packed(ones.view(), x.view(), x.view(), map.as_ref(), &cfg, &short)
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidParameter {
            name: "sequence lengths",
            ..
        }
    ));
}
