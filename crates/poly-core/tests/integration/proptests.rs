//! The engine's exact properties over shapes, degrees and data that proptest draws (and shrinks
//! to a minimal failing case): causal outputs never see future tokens, results are bit-identical
//! for any thread count, and `Sum` attention is invariant under scaling of the scores.

use poly_core::{AttentionConfig, Kernel, Mask, Normalization, Tensor, Threads, attention};
use proptest::prelude::*;
use std::num::NonZeroUsize;

/// One drawn problem: shapes, a kernel, and the data of q, k, v.
#[derive(Clone, Debug)]
struct Problem {
    heads: usize,
    n: usize,
    d: usize,
    d_v: usize,
    kernel: Kernel,
    data: Vec<f32>,
}

impl Problem {
    fn tensors(&self) -> [Tensor<f32>; 3] {
        let (qk, v) = (self.heads * self.n * self.d, self.heads * self.n * self.d_v);
        let (q, rest) = self.data.split_at(qk);
        let (k, v_data) = rest.split_at(qk);
        [
            Tensor::from_vec([1, self.heads, self.n, self.d], q.to_vec()).unwrap(),
            Tensor::from_vec([1, self.heads, self.n, self.d], k.to_vec()).unwrap(),
            Tensor::from_vec([1, self.heads, self.n, self.d_v], v_data[..v].to_vec()).unwrap(),
        ]
    }
}

/// Shapes across the tile boundaries (64 queries, one key tile up to 768 keys), even degrees and
/// softmax (well-posed `Sum` normalizers on signed data), values in [−1, 1].
fn problems() -> impl Strategy<Value = Problem> {
    (
        1usize..=3,
        prop_oneof![1usize..=70, 760usize..=800],
        1usize..=9,
        1usize..=5,
        prop_oneof![
            (1u32..=4).prop_map(|h| Kernel::Polynomial { degree: 2 * h }),
            Just(Kernel::Softmax)
        ],
    )
        .prop_flat_map(|(heads, n, d, d_v, kernel)| {
            let len = heads * n * (2 * d + d_v);
            proptest::collection::vec(-1.0f32..1.0, len).prop_map(move |data| Problem {
                heads,
                n,
                d,
                d_v,
                kernel,
                data,
            })
        })
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.as_slice().iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn causal_outputs_ignore_the_future(p in problems(), cut in 0.0f64..1.0, noise in -1.0f32..1.0) {
        let [q, k, v] = p.tensors();
        let cfg = AttentionConfig::new(p.kernel).with_mask(Mask::Causal);
        let base = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        // Change every token after position `i` of every head, in q, k and v.
        let i = ((p.n - 1) as f64 * cut) as usize;
        let change = |t: &Tensor<f32>| {
            let [_, heads, n, dim] = t.shape();
            let mut data = t.as_slice().to_vec();
            for h in 0..heads {
                for x in &mut data[(h * n + i + 1) * dim..(h + 1) * n * dim] {
                    *x = (*x + noise).sin();
                }
            }
            Tensor::from_vec(t.shape(), data).unwrap()
        };
        let out = attention(change(&q).view(), change(&k).view(), change(&v).view(), &cfg).unwrap();
        for h in 0..p.heads {
            let rows = h * p.n * p.d_v..(h * p.n + i + 1) * p.d_v;
            prop_assert_eq!(&bits(&base)[rows.clone()], &bits(&out)[rows]);
        }
    }

    #[test]
    fn thread_counts_do_not_change_a_bit(p in problems(), causal in any::<bool>()) {
        let [q, k, v] = p.tensors();
        let mask = if causal { Mask::Causal } else { Mask::None };
        let run = |threads: usize| {
            let cfg = AttentionConfig::new(p.kernel)
                .with_mask(mask)
                .with_threads(Threads::Exact(NonZeroUsize::new(threads).unwrap()));
            bits(&attention(q.view(), k.view(), v.view(), &cfg).unwrap())
        };
        let one = run(1);
        prop_assert_eq!(&one, &run(2));
        prop_assert_eq!(&one, &run(3));
    }

    #[test]
    fn sum_attention_is_scale_invariant(p in problems(), log_scale in -3.0f64..3.0) {
        prop_assume!(matches!(p.kernel, Kernel::Polynomial { .. }));
        let [q, k, v] = p.tensors();
        let cfg = AttentionConfig::new(p.kernel).with_normalization(Normalization::Sum);
        let plain = attention(q.view(), k.view(), v.view(), &cfg).unwrap();
        let scaled = attention(q.view(), k.view(), v.view(), &cfg.with_scale(10f64.powf(log_scale))).unwrap();
        // Outputs are weighted means of values in [−1, 1]; f32 rounding of the rescaled scores
        // moves them by a few ulps times the degree.
        for (a, b) in plain.as_slice().iter().zip(scaled.as_slice()) {
            prop_assert!((a - b).abs() <= 2e-4, "{} vs {}", a, b);
        }
    }
}
