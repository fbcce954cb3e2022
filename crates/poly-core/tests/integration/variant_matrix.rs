//! The variants together: grouped heads × {full, causal} × {no window, windows} × {one sequence
//! (n_q = n_k and n_q ≠ n_k), packed sequences, a right-padded batch}, every normalization and
//! both kernels, against attention with the visibility spelled out densely here; and the
//! no-leak property of packed sequences, bit for bit.

use crate::common::{Data, bits_equal, dense_attention, random_tensor, relative_error, rng};
use poly_core::{
    AttentionConfig, Kernel, Mask, Normalization, Sequences, Tensor, attention, attention_packed,
    attention_padded,
};

/// How the sequence axis is laid out in one case.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// One sequence per (batch, head); queries are the last n_q of n_k positions.
    Single { n_q: usize, n_k: usize },
    /// These sequence lengths, packed.
    Packed(&'static [usize]),
    /// n positions, of which batch entry b has `lengths[b]` valid keys.
    Padded { n: usize, lengths: &'static [usize] },
}

/// Whether query i sees key j, from first principles: the mask and window at the aligned
/// position, inside the query's own sequence, below the entry's valid length.
fn sees(case: Case, cfg: &AttentionConfig, batch: usize, i: usize, j: usize) -> bool {
    let (n_q, n_k) = match case {
        Case::Single { n_q, n_k } => (n_q, n_k),
        Case::Packed(lengths) => (lengths.iter().sum(), lengths.iter().sum()),
        Case::Padded { n, .. } => (n, n),
    };
    let at = (i + n_k - n_q) as i64;
    let jj = j as i64;
    let band = match (cfg.mask, cfg.window) {
        (Mask::Causal, None) => jj <= at,
        (Mask::Causal, Some(w)) => jj <= at && jj > at - w as i64,
        (_, None) => true,
        (_, Some(w)) => (at - jj).abs() < w as i64,
    };
    let inside = match case {
        Case::Single { .. } => true,
        Case::Packed(lengths) => {
            let sequence_of = |x: usize| {
                let mut end = 0;
                lengths.iter().position(|&l| {
                    end += l;
                    x < end
                })
            };
            sequence_of(i) == sequence_of(j)
        }
        // Padding queries (at or beyond the valid length) see nothing and output 0.
        Case::Padded { lengths, .. } => j < lengths[batch] && i < lengths[batch],
    };
    band && inside
}

/// The engine entry point of a case's layout.
fn run<T: poly_core::Element>(
    case: Case,
    [q, k, v]: [&Tensor<T>; 3],
    cfg: &AttentionConfig,
) -> poly_core::Result<Tensor<T>> {
    match case {
        Case::Single { .. } => attention(q.view(), k.view(), v.view(), cfg),
        Case::Packed(l) => {
            let sequences = Sequences::from_lengths(l).unwrap();
            attention_packed(q.view(), k.view(), v.view(), cfg, &sequences)
        }
        Case::Padded { lengths, .. } => {
            attention_padded(q.view(), k.view(), v.view(), cfg, lengths)
        }
    }
}

#[test]
fn every_combination_equals_the_dense_visibility() {
    let mut r = rng(71);
    let (batch, d, d_v) = (2, 6, 3);
    // Lengths around the 64-row tiles: 1, tile ± 1.
    let cases = [
        Case::Single { n_q: 65, n_k: 65 },
        Case::Single { n_q: 1, n_k: 63 },
        Case::Single { n_q: 20, n_k: 129 },
        Case::Packed(&[1, 63, 65, 9]),
        Case::Padded {
            n: 66,
            lengths: &[66, 63],
        },
    ];
    let mut checked = 0;
    for (heads, kv_heads) in [(3, 3), (4, 2), (4, 1)] {
        for case in cases {
            let (n_q, n_k) = match case {
                Case::Single { n_q, n_k } => (n_q, n_k),
                Case::Packed(l) => (l.iter().sum(), l.iter().sum()),
                Case::Padded { n, .. } => (n, n),
            };
            let q = random_tensor::<f64>(&mut r, [batch, heads, n_q, d], Data::Positive);
            let k = random_tensor::<f64>(&mut r, [batch, kv_heads, n_k, d], Data::Positive);
            let v = random_tensor::<f64>(&mut r, [batch, kv_heads, n_k, d_v], Data::Signed);
            let (q32, k32, v32) = (
                q.map(|&x| x as f32),
                k.map(|&x| x as f32),
                v.map(|&x| x as f32),
            );
            for (c, kernel) in [Kernel::Polynomial { degree: 3 }, Kernel::Softmax]
                .into_iter()
                .enumerate()
            {
                for mask in [Mask::None, Mask::Causal] {
                    for (w, window) in [None, Some(1), Some(5), Some(64)].into_iter().enumerate() {
                        // Normalizations rotate, except that padded cases run Sum with every
                        // window (a padding row beyond the window sees no key at all).
                        let normalization = match case {
                            Case::Padded { .. } => Normalization::Sum,
                            _ => [
                                Normalization::Sum,
                                Normalization::OnePlusSum(0.5),
                                Normalization::None,
                            ][(c + w) % 3],
                        };
                        let mut cfg = AttentionConfig::new(kernel)
                            .with_mask(mask)
                            .with_normalization(normalization);
                        cfg.window = window;
                        let label = format!(
                            "{heads}/{kv_heads} heads {case:?} {kernel:?} {mask:?} {window:?} \
                             {normalization:?}"
                        );
                        let want =
                            dense_attention(&q, &k, &v, &cfg, |b, i, j| sees(case, &cfg, b, i, j));
                        let got = run(case, [&q, &k, &v], &cfg)
                            .unwrap_or_else(|e| panic!("{label}: {e}"));
                        assert!(relative_error(&got, &want) < 1e-12, "f64 {label}");
                        let got = run(case, [&q32, &k32, &v32], &cfg).unwrap();
                        assert!(relative_error(&got, &want) < 1e-4, "f32 {label}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 5 * 2 * 2 * 4);
}

/// Changing one packed sequence (its queries, keys and values) never changes another's output,
/// bit for bit, in either kernel, with and without a window, causal or not.
#[test]
fn packed_sequences_never_leak_into_each_other() {
    let mut r = rng(72);
    let lengths = [64, 1, 65, 40];
    let n: usize = lengths.iter().sum();
    let sequences = Sequences::from_lengths(&lengths).unwrap();
    let shape = |heads, width| [2, heads, n, width];
    let q = random_tensor::<f32>(&mut r, shape(4, 8), Data::Positive);
    let k = random_tensor::<f32>(&mut r, shape(2, 8), Data::Positive);
    let v = random_tensor::<f32>(&mut r, shape(2, 5), Data::Signed);
    // Sequence 2 (rows 65..130) replaced by other data in every tensor.
    let changed = 65..130;
    let replace = |x: &Tensor<f32>, seed: u64| {
        let other = random_tensor::<f32>(&mut rng(seed), x.shape(), Data::Positive);
        let width = x.shape()[3];
        let mut data = x.as_slice().to_vec();
        for (row, (dst, src)) in data
            .chunks_exact_mut(width)
            .zip(other.as_slice().chunks_exact(width))
            .enumerate()
        {
            if changed.contains(&(row % n)) {
                dst.copy_from_slice(src);
            }
        }
        Tensor::from_vec(x.shape(), data).unwrap()
    };
    let (q2, k2, v2) = (replace(&q, 1), replace(&k, 2), replace(&v, 3));
    for kernel in [Kernel::Polynomial { degree: 4 }, Kernel::Softmax] {
        for mask in [Mask::None, Mask::Causal] {
            for window in [None, Some(9)] {
                let mut cfg = AttentionConfig::new(kernel).with_mask(mask);
                cfg.window = window;
                let a = attention_packed(q.view(), k.view(), v.view(), &cfg, &sequences).unwrap();
                let b =
                    attention_packed(q2.view(), k2.view(), v2.view(), &cfg, &sequences).unwrap();
                let rows = |t: &Tensor<f32>, keep: bool| -> Vec<f32> {
                    t.as_slice()
                        .chunks_exact(5)
                        .enumerate()
                        .filter(|(row, _)| changed.contains(&(row % n)) != keep)
                        .flat_map(|(_, x)| x.to_vec())
                        .collect()
                };
                let label = format!("{kernel:?} {mask:?} {window:?}");
                assert!(bits_equal(&rows(&a, true), &rows(&b, true)), "{label}");
                // The changed sequence itself did change (the comparison can fail).
                assert!(!bits_equal(&rows(&a, false), &rows(&b, false)), "{label}");
            }
        }
    }
}
