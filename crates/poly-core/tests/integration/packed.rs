//! Packed variable-length sequences and right-padded batches: each sequence alone, computed by
//! ordinary attention, gives its rows of the packed (or padded) result; the reference agrees; bad
//! lengths are errors.

use crate::common::{Data, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Error, Kernel, Mask, Normalization, Sequences, Tensor, attention,
    attention_packed, attention_padded, reference_attention_packed, reference_attention_padded,
};

fn rows_of(x: &Tensor<f32>, rows: std::ops::Range<usize>) -> Tensor<f32> {
    x.view().rows(rows).unwrap()
}

/// Largest |a − b| / max(|b|, 1e-3) between two results of the same rows.
fn max_relative_gap(a: &Tensor<f32>, b: &Tensor<f32>) -> f32 {
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
        .fold(0.0f32, f32::max)
}

#[test]
fn each_packed_sequence_equals_attention_over_it_alone() {
    let mut r = rng(51);
    // Lengths around the 64-row tiles: 1, tile ± 1, and a long one.
    let lengths = [1, 63, 65, 2, 130, 7];
    let n: usize = lengths.iter().sum();
    let sequences = Sequences::from_lengths(&lengths).unwrap();
    assert_eq!((sequences.count(), sequences.total_len()), (6, n));
    let q = random_tensor::<f32>(&mut r, [2, 3, n, 8], Data::Positive);
    let k = random_tensor::<f32>(&mut r, [2, 1, n, 8], Data::Positive); // and grouped heads
    let v = random_tensor::<f32>(&mut r, [2, 1, n, 4], Data::Signed);
    for kernel in [Kernel::Polynomial { degree: 3 }, Kernel::Softmax] {
        for mask in [Mask::None, Mask::Causal] {
            for window in [None, Some(5)] {
                for normalization in [
                    Normalization::Sum,
                    Normalization::OnePlusSum(1.0),
                    Normalization::None,
                ] {
                    let mut cfg = AttentionConfig::new(kernel)
                        .with_mask(mask)
                        .with_normalization(normalization);
                    cfg.window = window;
                    let label = format!("{kernel:?} {mask:?} {window:?} {normalization:?}");
                    let packed =
                        attention_packed(q.view(), k.view(), v.view(), &cfg, &sequences).unwrap();
                    let want =
                        reference_attention_packed(q.view(), k.view(), v.view(), &cfg, &sequences)
                            .unwrap();
                    assert!(relative_error(&packed, &want) < 1e-4, "{label}");
                    let mut start = 0;
                    for &len in &lengths {
                        let rows = start..start + len;
                        let (qs, ks, vs) = (
                            rows_of(&q, rows.clone()),
                            rows_of(&k, rows.clone()),
                            rows_of(&v, rows.clone()),
                        );
                        let alone = attention(qs.view(), ks.view(), vs.view(), &cfg).unwrap();
                        let mine = rows_of(&packed, rows);
                        // Tile plans differ with n, so equal within rounding, not bits.
                        let err = max_relative_gap(&mine, &alone);
                        assert!(err < 1e-4, "{label} sequence at {start}: {err}");
                        start += len;
                    }
                }
            }
        }
    }
}

#[test]
fn lengths_that_do_not_fill_the_axis_are_errors() {
    assert!(Sequences::from_lengths(&[]).is_err());
    assert!(
        Sequences::from_lengths(&[3, 0, 2])
            .unwrap_err()
            .to_string()
            .contains("index 1")
    );
    assert!(Sequences::from_lengths(&[usize::MAX, 1]).is_err());
    let x = Tensor::from_vec([1, 1, 5, 1], vec![1.0f32; 5]).unwrap();
    let cfg = AttentionConfig::polynomial(2);
    let short = Sequences::from_lengths(&[2, 2]).unwrap();
    let err = attention_packed(x.view(), x.view(), x.view(), &cfg, &short).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidParameter {
                name: "sequence lengths",
                ..
            }
        ),
        "{err:?}"
    );
    let y = Tensor::from_vec([1, 1, 4, 1], vec![1.0f32; 4]).unwrap();
    let err = attention_packed(y.view(), x.view(), x.view(), &cfg, &short).unwrap_err();
    assert!(err.to_string().contains("n_q = 4, n_k = 5"), "{err}");
    // Row ranges outside the sequence axis are errors, not panics.
    assert!(x.view().rows(3..6).is_err());
    assert_eq!(x.view().rows(1..3).unwrap().shape(), [1, 1, 2, 1]);
}

/// `x` (`[b, h, n, d]`) with batch entry `b`'s rows cut to `len`: that entry alone.
fn entry(x: &Tensor<f32>, b: usize, len: usize) -> Tensor<f32> {
    let [_, h, n, d] = x.shape();
    let one = &x.as_slice()[b * h * n * d..(b + 1) * h * n * d];
    let t = Tensor::from_vec([1, h, n, d], one.to_vec()).unwrap();
    t.view().rows(0..len).unwrap()
}

#[test]
fn padded_keys_are_never_seen() {
    let mut r = rng(52);
    // 70 rows: one 64-row tile and a tail; 200: non-causal tiles of 128 rows and a tail.
    for (n, lengths) in [(70, [70, 1, 33]), (200, [200, 1, 133])] {
        padded_case(&mut r, n, lengths);
    }
    let (q, k, v) = (
        random_tensor::<f32>(&mut r, [3, 2, 70, 6], Data::Positive),
        random_tensor::<f32>(&mut r, [3, 2, 70, 6], Data::Positive),
        random_tensor::<f32>(&mut r, [3, 2, 70, 4], Data::Signed),
    );
    let cfg = AttentionConfig::polynomial(2);
    for bad in [&[70, 1][..], &[70, 0, 3], &[71, 1, 1]] {
        let err = attention_padded(q.view(), k.view(), v.view(), &cfg, bad).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidParameter {
                    name: "key lengths",
                    ..
                }
            ),
            "{bad:?}"
        );
    }
}

/// A padded batch of three entries of `n` rows with valid lengths `lengths`: the engine equals the
/// reference, and each entry's valid rows equal that entry alone.
fn padded_case(r: &mut rand::rngs::StdRng, n: usize, lengths: [usize; 3]) {
    let q = random_tensor::<f32>(r, [3, 2, n, 6], Data::Positive);
    let k = random_tensor::<f32>(r, [3, 2, n, 6], Data::Positive);
    let v = random_tensor::<f32>(r, [3, 2, n, 4], Data::Signed);
    for kernel in [Kernel::Polynomial { degree: 4 }, Kernel::Softmax] {
        for mask in [Mask::None, Mask::Causal] {
            let cfg = AttentionConfig::new(kernel).with_mask(mask);
            let padded = attention_padded(q.view(), k.view(), v.view(), &cfg, &lengths).unwrap();
            let want =
                reference_attention_padded(q.view(), k.view(), v.view(), &cfg, &lengths).unwrap();
            assert!(
                relative_error(&padded, &want) < 1e-4,
                "{kernel:?} {mask:?} n = {n}"
            );
            for (b, &len) in lengths.iter().enumerate() {
                // The valid rows equal the entry cut to its length (the padding never enters).
                let alone = attention(
                    entry(&q, b, len).view(),
                    entry(&k, b, len).view(),
                    entry(&v, b, len).view(),
                    &cfg,
                )
                .unwrap();
                let mine = entry(&padded, b, len);
                let err = max_relative_gap(&mine, &alone);
                assert!(err < 1e-4, "{kernel:?} {mask:?} n = {n} entry {b}: {err}");
            }
        }
    }
}
