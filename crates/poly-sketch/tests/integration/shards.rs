//! The two shard passes of sequence-parallel linear attention, chained in one process as the
//! ordered scan chains them across ranks: bit-identical to the engine when the shards lie on its
//! chunk grid, equal to rounding otherwise; decoding snapshots restore only into their own map.

use crate::common::random;
use poly_core::{Mask, Normalization, Tensor};
use poly_sketch::{
    DecodingState, ExactDegree2, FeatureMap, LinearAttentionConfig, PolySketch, SelfTensoredSketch,
    ShardInputs, ShardPlan, SketchScale, linear_attention, scan_chunks, state_len,
};
use std::ops::Range;

fn rows(t: &Tensor<f64>, r: Range<usize>) -> Tensor<f64> {
    t.view().rows(r).unwrap()
}

/// The shards' outputs, computed pass 1 → ordered scan → pass 2, concatenated per head.
fn sharded(
    [q, k, v]: [&Tensor<f64>; 3],
    map: &dyn FeatureMap<f64>,
    cfg: &LinearAttentionConfig,
    cuts: &[usize],
) -> Vec<f64> {
    let n = q.shape()[2];
    let d_v = v.shape()[3];
    let shards: Vec<Range<usize>> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
    let heads = k.shape()[0] * k.shape()[1];
    let mut running = vec![vec![0.0; state_len(map, d_v)]; heads];
    let mut befores = Vec::new();
    let mut totals = Vec::new();
    let parts: Vec<[Tensor<f64>; 3]> = shards
        .iter()
        .map(|s| [q, k, v].map(|t| rows(t, s.clone())))
        .collect();
    let mut shard_inputs = Vec::new();
    for (s, [qs, ks, vs]) in shards.iter().zip(&parts) {
        let plan = ShardPlan::new(n, s.clone(), cfg).unwrap();
        let inputs = ShardInputs::new(qs.view(), ks.view(), vs.view(), map, cfg, plan).unwrap();
        let t = inputs.key_totals().unwrap();
        befores.push(running.clone());
        t.add_to(&mut running);
        totals.push(t);
        shard_inputs.push(inputs);
    }
    let mut out = vec![vec![]; q.shape()[0] * q.shape()[1]];
    for (i, s) in shards.iter().enumerate() {
        let before = if cfg.mask == Mask::Causal {
            &befores[i]
        } else {
            &running
        };
        let y = shard_inputs[i].outputs(&totals[i], before).unwrap();
        for (head, piece) in out.iter_mut().zip(y.as_slice().chunks_exact(s.len() * d_v)) {
            head.extend_from_slice(piece);
        }
    }
    out.concat()
}

#[test]
fn chained_shards_equal_the_engine() {
    let (n, d, block) = (4096, 6, 16);
    let q = random::<f64>(1, [1, 4, n, d]);
    let k = random::<f64>(2, [1, 2, n, d]);
    let v = random::<f64>(3, [1, 2, n, 3]);
    let maps: Vec<Box<dyn FeatureMap<f64>>> = vec![
        Box::new(PolySketch::new(d, 4, 12, 9, SketchScale::Unbiased).unwrap()),
        Box::new(SelfTensoredSketch::new(d, 4, 6, 9, SketchScale::Unbiased).unwrap()),
        Box::new(ExactDegree2::new(d).unwrap()),
    ];
    // 256 blocks: the grid has 16 chunks of 256 rows, so these cuts are on it ...
    let grid: Vec<usize> = scan_chunks(n, block).iter().map(|c| c.start).collect();
    assert_eq!(grid.len(), 16);
    let aligned = [0, grid[3], grid[4], grid[11], n];
    // ... and these are not (one splits a block).
    let uneven = [0, 1, 700, 2051, n];
    for map in &maps {
        for cfg in [
            LinearAttentionConfig::default()
                .with_mask(Mask::Causal)
                .with_block(block),
            LinearAttentionConfig::default()
                .with_block(block)
                .with_normalization(Normalization::None),
            LinearAttentionConfig::default()
                .with_mask(Mask::Causal)
                .with_block(block)
                .with_local_exact(true),
        ] {
            let whole = linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg).unwrap();
            let got = sharded([&q, &k, &v], map.as_ref(), &cfg, &aligned);
            assert!(
                got == whole.as_slice(),
                "{cfg:?}: aligned shards are bit-identical"
            );
            if !cfg.local_exact {
                let got = sharded([&q, &k, &v], map.as_ref(), &cfg, &uneven);
                let scale = whole.as_slice().iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let err = got
                    .iter()
                    .zip(whole.as_slice())
                    .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(err <= 1e-12 * scale, "{cfg:?}: {err:e}");
            }
        }
    }
    // The mixed variant's exact blocks may not straddle shards.
    let mixed = LinearAttentionConfig::default()
        .with_mask(Mask::Causal)
        .with_block(block)
        .with_local_exact(true);
    assert!(ShardPlan::new(n, 5..100, &mixed).is_err());
    assert!(ShardPlan::new(n, 0..0, &mixed).is_err());
    assert!(ShardPlan::new(n, 4000..4097, &mixed).is_err());
}

#[test]
fn snapshots_restore_only_into_the_same_map() {
    let d = 4;
    let map = PolySketch::<f64>::new(d, 2, 8, 1, SketchScale::Unbiased).unwrap();
    let other = PolySketch::<f64>::new(d, 2, 8, 2, SketchScale::Unbiased).unwrap();
    let cfg = LinearAttentionConfig::default();
    let x = random::<f64>(5, [1, 1, 9, d]);
    let mut a = DecodingState::new(&map, d, &cfg).unwrap();
    a.prefill(x.as_slice(), x.as_slice()).unwrap();
    let snapshot = a.snapshot();
    let mut b = DecodingState::new(&map, d, &cfg).unwrap();
    b.restore(&snapshot).unwrap();
    let token = &x.as_slice()[..d];
    assert_eq!(
        a.step(token, token, token).unwrap(),
        b.step(token, token, token).unwrap()
    );
    let mut wrong = DecodingState::new(&other, d, &cfg).unwrap();
    assert!(
        wrong.restore(&snapshot).is_err(),
        "another seed's map is refused"
    );
    let mut corrupt = snapshot.clone();
    corrupt.state[0] = f64::INFINITY;
    assert!(b.restore(&corrupt).is_err());
    assert_eq!(b.len(), 10, "a refused snapshot changes nothing");
}
