//! `mpirun -np P poly-dist-selftest`: checks, on this MPI installation and P ranks, that every
//! distributed engine equals the single-process one, and that failures reach every rank alike.
//!
//! Every rank builds the whole inputs from fixed seeds, computes the single-process result, and
//! compares its own shard of the distributed result with it: exact attention (ring) to 1e-12
//! relative in f64 and 1e-5 in f32, sketched attention bit for bit when the shards lie on the
//! engine's chunk grid (ordered scan) and to rounding otherwise. Exit status 0 only if every
//! check passed on every rank; the integration tests run it for P = 1 … 4.

use poly_core::{AttentionConfig, Element, KvCache, Mask, Normalization, Tensor, attention};
use poly_data::synthetic::uniform;
use poly_dist::mpi::traits::{Communicator, CommunicatorCollectives};
use poly_dist::{
    DistElement, FailureKind, ShardLayout, StateScan, gather_kv_caches, receive_decoding_snapshot,
    receive_kv_snapshot, ring_attention, send_decoding_snapshot, send_kv_snapshot, shard_rows,
    sketched_attention, sketched_prefill,
};
use poly_sketch::{
    DecodingState, ExactDegree2, FeatureMap, LinearAttentionConfig, PolySketch, SelfTensoredSketch,
    SketchScale, linear_attention, scan_chunks,
};
use std::ops::Range;

/// Checks run and failed on this rank.
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(format!("{name}: {}", detail()));
        }
    }
}

fn inputs<T: Element + Default>(
    shape: [usize; 4],
    kv_heads: usize,
    d_v: usize,
    seed: u64,
) -> [Tensor<T>; 3] {
    let [b, h, n, d] = shape;
    [
        uniform([b, h, n, d], -1.0, 1.0, seed).expect("valid shape"),
        uniform([b, kv_heads, n, d], -1.0, 1.0, seed + 1).expect("valid shape"),
        uniform([b, kv_heads, n, d_v], -1.0, 1.0, seed + 2).expect("valid shape"),
    ]
}

/// Largest |a − b| relative to the largest |b|.
fn relative_error<T: Element>(a: &[T], b: &[T]) -> f64 {
    let scale = b
        .iter()
        .fold(0.0f64, |m, x| m.max(x.to_f64().abs()))
        .max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x.to_f64() - y.to_f64()).abs()))
        / scale
}

/// Uneven contiguous shards: rank r gets a share proportional to r + 1 (at least one row).
fn uneven(n: usize, ranks: usize, rank: usize) -> Vec<Range<usize>> {
    let weight: usize = (1..=ranks).sum();
    let cut = |r: usize| (n * (1..=r).sum::<usize>() / weight).max(r.min(n));
    let (start, end) = (cut(rank), if rank + 1 == ranks { n } else { cut(rank + 1) });
    vec![start..end.max(start)]
}

fn exact_cases<C: Communicator, T: DistElement + Default>(comm: &C, tally: &mut Tally, tol: f64) {
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let cfgs = [
        AttentionConfig::polynomial(4).with_mask(Mask::Causal),
        AttentionConfig::polynomial(3)
            .with_normalization(Normalization::None)
            .with_layernorm(true),
        AttentionConfig::polynomial(2).with_normalization(Normalization::OnePlusSum(1.0)),
        AttentionConfig::polynomial(6)
            .with_mask(Mask::Causal)
            .with_window(37),
        AttentionConfig::softmax().with_mask(Mask::Causal),
        AttentionConfig::softmax().with_scale(0.3),
        AttentionConfig::softmax()
            .with_mask(Mask::Causal)
            .with_window(70),
    ];
    // n = 193: tiles of 64 ± 1 and shards that split tiles; GQA 4/2 on one case in two.
    let n = 193;
    for (i, cfg) in cfgs.iter().enumerate() {
        let kv_heads = if i % 2 == 0 { 2 } else { 4 };
        let [q, k, v] = inputs::<T>([2, 4, n, 16], kv_heads, 12, 100 + i as u64);
        let Ok(whole) = attention(q.view(), k.view(), v.view(), cfg) else {
            tally.check(&format!("single-process {cfg:?}"), false, || {
                "failed".into()
            });
            continue;
        };
        let layouts: [(&str, Vec<Range<usize>>); 3] = [
            (
                "contiguous",
                ShardLayout::Contiguous.segments(n, size, rank),
            ),
            ("zigzag", ShardLayout::ZigZag.segments(n, size, rank)),
            ("uneven", uneven(n, size, rank)),
        ];
        for (layout, segs) in layouts {
            let name = format!("ring {cfg:?} {layout} {}", std::any::type_name::<T>());
            let local = |t: &Tensor<T>| shard_rows(t.view(), &segs).expect("inside n");
            let (lq, lk, lv) = (local(&q), local(&k), local(&v));
            match ring_attention(comm, lq.view(), lk.view(), lv.view(), &segs, cfg) {
                Ok((out, stats)) => {
                    let expected = local(&whole);
                    let err = relative_error(out.as_slice(), expected.as_slice());
                    tally.check(&name, err <= tol, || {
                        format!("relative error {err:e} > {tol:e}")
                    });
                    tally.check(&name, stats.blocks_computed >= 1, || {
                        "no block computed".into()
                    });
                }
                Err(e) => tally.check(&name, false, || e.to_string()),
            }
        }
    }
}

fn sketched_cases<C: Communicator, T: DistElement + Default>(
    comm: &C,
    tally: &mut Tally,
    tol: f64,
) {
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let d = 8;
    let maps: Vec<(&str, Box<dyn FeatureMap<T>>)> = vec![
        (
            "polysketch",
            Box::new(PolySketch::new(d, 4, 16, 3, SketchScale::Unbiased).expect("valid")),
        ),
        (
            "self-tensored",
            Box::new(SelfTensoredSketch::new(d, 4, 8, 5, SketchScale::Unbiased).expect("valid")),
        ),
        ("exact2", Box::new(ExactDegree2::new(d).expect("valid"))),
    ];
    let block = 16;
    // 16 blocks: the engine's chunk grid is every block, so block-aligned shards are on it.
    let n = 256;
    let aligned: Vec<Range<usize>> = {
        let chunks = scan_chunks(n, block);
        let per = chunks.len().div_ceil(size);
        let first = (rank * per).min(chunks.len());
        let last = ((rank + 1) * per).min(chunks.len());
        if first < last {
            vec![chunks[first].start..chunks[last - 1].end]
        } else {
            vec![n..n]
        }
    };
    for (map_name, map) in &maps {
        let cfgs = [
            LinearAttentionConfig::default()
                .with_mask(Mask::Causal)
                .with_block(block),
            LinearAttentionConfig::default().with_block(block),
            LinearAttentionConfig::default()
                .with_mask(Mask::Causal)
                .with_block(block)
                .with_local_exact(true)
                .with_normalization(Normalization::OnePlusSum(1.0)),
            LinearAttentionConfig::default()
                .with_mask(Mask::Causal)
                .with_block(block)
                .with_layernorm(true)
                .with_scale(0.5),
        ];
        for (i, cfg) in cfgs.iter().enumerate() {
            let [q, k, v] = inputs::<T>([1, 4, n, d], 2, 6, 300 + i as u64);
            let whole = linear_attention(q.view(), k.view(), v.view(), map.as_ref(), cfg);
            let Ok(whole) = whole else {
                continue; // A signed sketch refused by the normalizer rule: nothing to compare.
            };
            // Contiguous shards that split blocks cannot run the mixed variant (its exact blocks
            // must not straddle ranks).
            let mut layouts = vec![("aligned", aligned.clone(), StateScan::Ordered, 0.0)];
            layouts.push(("aligned tree", aligned.clone(), StateScan::Tree, tol));
            if !cfg.local_exact {
                layouts.push(("uneven", uneven(n, size, rank), StateScan::Ordered, tol));
            }
            for (layout, segs, scan, tolerance) in layouts {
                let name = format!(
                    "sketched {map_name} {cfg:?} {layout} {}",
                    std::any::type_name::<T>()
                );
                let rows = segs[0].clone();
                let local = |t: &Tensor<T>| shard_rows(t.view(), &segs).expect("inside n");
                let (lq, lk, lv) = (local(&q), local(&k), local(&v));
                if rows.is_empty() {
                    // More ranks than chunks: this rank would hold nothing, which shards forbid.
                    continue;
                }
                match sketched_attention(
                    comm,
                    lq.view(),
                    lk.view(),
                    lv.view(),
                    rows,
                    map.as_ref(),
                    cfg,
                    scan,
                ) {
                    Ok((out, _)) => {
                        let expected = local(&whole);
                        let err = relative_error(out.as_slice(), expected.as_slice());
                        let bits = out.as_slice() == expected.as_slice();
                        let ok = if tolerance == 0.0 {
                            bits
                        } else {
                            err <= tolerance
                        };
                        tally.check(&name, ok, || {
                            format!("relative error {err:e}, bit-identical {bits}")
                        });
                    }
                    Err(e) => tally.check(&name, false, || e.to_string()),
                }
            }
        }
    }
}

/// Prefill across ranks, decode on rank 0; the exact cache likewise. Both are compared with the
/// engines' last row, and the states are sent rank 0 → last and back.
fn handoff_cases<C: Communicator>(comm: &C, tally: &mut Tally) {
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let (n, d, d_v) = (96, 8, 5);
    let [q, k, v] = inputs::<f64>([1, 2, n, d], 2, d_v, 900);
    let prompt = n - 1;
    let segs = ShardLayout::Contiguous.segments(prompt, size, rank);
    let prompt_rows = |t: &Tensor<f64>| shard_rows(t.view(), &segs).expect("inside the prompt");
    let (pk, pv) = (prompt_rows(&k), prompt_rows(&v));
    let row = |t: &Tensor<f64>, h: usize, w: usize| {
        t.as_slice()[(h * n + n - 1) * w..(h * n + n) * w].to_vec()
    };

    let map = PolySketch::<f64>::new(d, 2, 16, 11, SketchScale::Unbiased).expect("valid");
    let cfg = LinearAttentionConfig::default()
        .with_mask(Mask::Causal)
        .with_block(8);
    let whole = linear_attention(q.view(), k.view(), v.view(), &map, &cfg).expect("valid");
    let snapshots = sketched_prefill(comm, pk.view(), pv.view(), segs[0].clone(), &map, &cfg, 0);
    match snapshots {
        Ok(snapshots) if rank == 0 => {
            for (h, snapshot) in snapshots.iter().enumerate() {
                let mut state = DecodingState::new(&map, d_v, &cfg).expect("valid");
                let restored = state.restore(snapshot);
                let y = restored
                    .and_then(|()| state.step(&row(&q, h, d), &row(&k, h, d), &row(&v, h, d_v)));
                let err = y.map(|y| relative_error(&y, &row(&whole, h, d_v)));
                tally.check(
                    "sketched prefill + decode",
                    matches!(err, Ok(e) if e <= 1e-12),
                    || format!("{err:?}"),
                );
            }
            if size > 1 {
                send_decoding_snapshot(comm, size - 1, &snapshots[0]);
                let back = receive_decoding_snapshot::<_, f64>(comm, size - 1);
                tally.check("decoding snapshot round trip", back == snapshots[0], || {
                    "changed in transit".into()
                });
            }
        }
        Ok(_) => {
            if rank == size - 1 {
                let s = receive_decoding_snapshot::<_, f64>(comm, 0);
                send_decoding_snapshot(comm, 0, &s);
            }
        }
        Err(e) => tally.check("sketched prefill", false, || e.to_string()),
    }

    let exact = AttentionConfig::polynomial(4)
        .with_mask(Mask::Causal)
        .with_layernorm(true);
    let whole = attention(q.view(), k.view(), v.view(), &exact).expect("valid");
    match gather_kv_caches(comm, pk.view(), pv.view(), &segs, &exact, 0) {
        Ok(caches) if rank == 0 => {
            let mut cache: KvCache<f64> = caches.into_iter().next().expect("one batch entry");
            let last_k: Vec<f64> = (0..2).flat_map(|h| row(&k, h, d)).collect();
            let last_v: Vec<f64> = (0..2).flat_map(|h| row(&v, h, d_v)).collect();
            let last_q: Vec<f64> = (0..2).flat_map(|h| row(&q, h, d)).collect();
            let y = cache
                .append(&last_k, &last_v)
                .and_then(|()| cache.attend(&last_q, 2));
            let expected: Vec<f64> = (0..2).flat_map(|h| row(&whole, h, d_v)).collect();
            let err = y.map(|y| relative_error(y.as_slice(), &expected));
            tally.check(
                "kv gather + decode",
                matches!(err, Ok(e) if e <= 1e-12),
                || format!("{err:?}"),
            );
            if size > 1 {
                let snapshot = cache.snapshot();
                send_kv_snapshot(comm, size - 1, &snapshot);
                let back = receive_kv_snapshot::<_, f64>(comm, size - 1);
                let rebuilt = KvCache::from_snapshot(&exact, &back).map(|c| c.snapshot());
                tally.check(
                    "kv snapshot round trip",
                    rebuilt.as_ref() == Ok(&snapshot),
                    || format!("{rebuilt:?}"),
                );
            }
        }
        Ok(_) => {
            if rank == size - 1 {
                let s = receive_kv_snapshot::<_, f64>(comm, 0);
                send_kv_snapshot(comm, 0, &s);
            }
        }
        Err(e) => tally.check("kv gather", false, || e.to_string()),
    }
}

/// Every rank must return the same error, and the communicator must still work afterwards.
fn failure_cases<C: Communicator>(comm: &C, tally: &mut Tally) {
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let n = 64;
    let segs = ShardLayout::Contiguous.segments(n, size, rank);
    let [q, k, v] = inputs::<f64>([1, 2, n, 8], 2, 4, 77);
    let local = |t: &Tensor<f64>| shard_rows(t.view(), &segs).expect("inside n");
    let (lq, lk, lv) = (local(&q), local(&k), local(&v));
    // The last rank holds a NaN key.
    let mut nan_k = lk.clone();
    if rank == size - 1 {
        nan_k.as_mut_slice()[3] = f64::NAN;
    }
    let cfg = AttentionConfig::polynomial(2).with_mask(Mask::Causal);
    let result = ring_attention(comm, lq.view(), nan_k.view(), lv.view(), &segs, &cfg);
    let same = same_outcome(comm, &result);
    let expected_rank = Some(size - 1);
    tally.check(
        "a NaN on the last rank fails every rank alike",
        matches!(&result, Err(e) if e.kind == FailureKind::NonFinite && e.rank == expected_rank && e.message.contains("k"))
            && same,
        || format!("{result:?}, same on all ranks: {same}"),
    );
    // Zero queries on rank 0 under Sum with degree 2: row 0 has an all-zero normalizer.
    let mut zq = lq.clone();
    if rank == 0 {
        zq.as_mut_slice().fill(0.0);
    }
    let result = ring_attention(
        comm,
        zq.view(),
        lk.view(),
        lv.view(),
        &segs,
        &AttentionConfig::polynomial(2),
    );
    let same = same_outcome(comm, &result);
    tally.check(
        "a row error on rank 0 fails every rank alike",
        matches!(&result, Err(e) if e.rank == Some(0) && e.kind == FailureKind::Row) && same,
        || format!("{result:?}, same on all ranks: {same}"),
    );
    // Overlapping shards: rank 0 claims one row too many.
    let mut bad = ShardLayout::Contiguous.segments(n, size, rank);
    if rank == 0 && size > 1 {
        bad[0].end += 1;
    }
    let (bq, bk, bv) = (
        shard_rows(q.view(), &bad).expect("inside n"),
        shard_rows(k.view(), &bad).expect("inside n"),
        shard_rows(v.view(), &bad).expect("inside n"),
    );
    let result = ring_attention(comm, bq.view(), bk.view(), bv.view(), &bad, &cfg);
    let ok = if size > 1 {
        matches!(&result, Err(e) if e.rank.is_none() && e.kind == FailureKind::Parameter)
    } else {
        result.is_ok()
    };
    tally.check("overlapping shards fail every rank alike", ok, || {
        format!("{result:?}")
    });
    // And the communicator still works: a clean call succeeds on every rank.
    let clean = ring_attention(comm, lq.view(), lk.view(), lv.view(), &segs, &cfg);
    tally.check(
        "the communicator works after failures",
        clean.is_ok(),
        || format!("{:?}", clean.err()),
    );
}

/// Whether every rank got the same outcome (the same error message, or success).
fn same_outcome<C: Communicator, R>(comm: &C, result: &poly_dist::Result<R>) -> bool {
    agreed(
        comm,
        &result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    )
}

/// Whether every rank passed the same string.
fn agreed<C: Communicator>(comm: &C, s: &str) -> bool {
    let hash = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let (mut lo, mut hi) = (0u64, 0u64);
    comm.all_reduce_into(
        &hash,
        &mut lo,
        poly_dist::mpi::collective::SystemOperation::min(),
    );
    comm.all_reduce_into(
        &hash,
        &mut hi,
        poly_dist::mpi::collective::SystemOperation::max(),
    );
    lo == hi
}

fn main() {
    let Some(universe) = poly_dist::initialize() else {
        eprintln!("error: MPI could not be initialized with funneled threading");
        std::process::exit(2);
    };
    let world = universe.world();
    let mut tally = Tally {
        passed: 0,
        failed: Vec::new(),
    };
    exact_cases::<_, f64>(&world, &mut tally, 1e-12);
    exact_cases::<_, f32>(&world, &mut tally, 1e-5);
    sketched_cases::<_, f64>(&world, &mut tally, 1e-12);
    sketched_cases::<_, f32>(&world, &mut tally, 1e-5);
    handoff_cases(&world, &mut tally);
    failure_cases(&world, &mut tally);
    for f in &tally.failed {
        eprintln!("rank {}: FAILED {f}", world.rank());
    }
    let mine = tally.failed.len() as u64;
    let mut total = 0u64;
    world.all_reduce_into(
        &mine,
        &mut total,
        poly_dist::mpi::collective::SystemOperation::sum(),
    );
    if world.rank() == 0 {
        println!(
            "poly-dist-selftest: {} ranks, {} checks on rank 0, {} failures on all ranks",
            world.size(),
            tally.passed + tally.failed.len(),
            total
        );
    }
    drop(universe);
    std::process::exit(i32::from(total > 0));
}
