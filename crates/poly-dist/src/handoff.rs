//! Moving decoding states between ranks: a prompt prefilled across ranks continues decoding on
//! one of them.
//!
//! Both kinds of state travel as their snapshots ([`poly_sketch::DecodingSnapshot`],
//! [`poly_core::KvCacheSnapshot`]): a header of integers, then the values. A sketched state is
//! `m (d_v + 2)` values whatever the prompt length; an exact cache is the prompt's keys and values.

use crate::element::DistElement;
use crate::error::{FailureKind, Result, agree, everywhere};
use crate::shard::Shards;
use mpi::traits::{Communicator, Destination, Source};
use poly_core::{AttentionConfig, KvCache, KvCacheSnapshot, TensorRef};
use poly_sketch::{
    DecodingSnapshot, FeatureMap, LinearAttentionConfig, ShardInputs, ShardPlan, state_len,
};
use std::ops::Range;

/// Sends a sketched decoding state's snapshot to rank `dest`.
pub fn send_decoding_snapshot<C: Communicator, T: DistElement>(
    comm: &C,
    dest: usize,
    s: &DecodingSnapshot<T>,
) {
    let to = comm.process_at_rank(dest as i32);
    let header = [
        s.tokens,
        s.d,
        s.d_v,
        s.m,
        s.state.len(),
        s.partial_keys.len(),
        s.partial_values.len(),
    ]
    .map(|x| x as u64);
    to.send(&header[..]);
    to.send(&s.map_fingerprint);
    for data in [&s.state, &s.partial_keys, &s.partial_values] {
        to.send(&data[..]);
    }
}

/// Receives a snapshot sent by [`send_decoding_snapshot`] from rank `source`; restore it with
/// [`poly_sketch::DecodingState::restore`], which checks it against the receiver's map.
pub fn receive_decoding_snapshot<C: Communicator, T: DistElement>(
    comm: &C,
    source: usize,
) -> DecodingSnapshot<T> {
    let from = comm.process_at_rank(source as i32);
    let mut header = [0u64; 7];
    from.receive_into(&mut header[..]);
    let mut fingerprint = 0.0f64;
    from.receive_into(&mut fingerprint);
    let mut buffers = [header[4], header[5], header[6]].map(|len| vec![T::ZERO; len as usize]);
    for b in &mut buffers {
        from.receive_into(&mut b[..]);
    }
    let [state, partial_keys, partial_values] = buffers;
    DecodingSnapshot {
        tokens: header[0] as usize,
        d: header[1] as usize,
        d_v: header[2] as usize,
        m: header[3] as usize,
        map_fingerprint: fingerprint,
        state,
        partial_keys,
        partial_values,
    }
}

/// Sends an exact KV cache's snapshot to rank `dest`.
pub fn send_kv_snapshot<C: Communicator, T: DistElement>(
    comm: &C,
    dest: usize,
    s: &KvCacheSnapshot<T>,
) {
    let to = comm.process_at_rank(dest as i32);
    let header = [s.kv_heads, s.d, s.d_v, s.len].map(|x| x as u64);
    to.send(&header[..]);
    to.send(&s.keys[..]);
    to.send(&s.values[..]);
}

/// Receives a snapshot sent by [`send_kv_snapshot`]; rebuild the cache with
/// [`KvCache::from_snapshot`].
pub fn receive_kv_snapshot<C: Communicator, T: DistElement>(
    comm: &C,
    source: usize,
) -> KvCacheSnapshot<T> {
    let from = comm.process_at_rank(source as i32);
    let mut header = [0u64; 4];
    from.receive_into(&mut header[..]);
    let [kv_heads, d, d_v, len] = header.map(|x| x as usize);
    let mut keys = vec![T::ZERO; kv_heads * len * d];
    let mut values = vec![T::ZERO; kv_heads * len * d_v];
    from.receive_into(&mut keys[..]);
    from.receive_into(&mut values[..]);
    KvCacheSnapshot {
        kv_heads,
        d,
        d_v,
        len,
        keys,
        values,
    }
}

/// Prefills a sketched decoding state from a prompt split across ranks: each rank passes its
/// prompt rows `rows` of keys `[batch, kv_heads, len, d]` and values `[batch, kv_heads, len, d_v]`
/// (contiguous shards in rank order), and rank `root` receives one snapshot per (batch, k/v
/// head), equal to what [`poly_sketch::DecodingState::prefill`] leaves after the whole prompt
/// (other ranks receive an empty list). The states are combined in sequence order
/// (in order, as [`crate::StateScan::Ordered`] does). Collective over `comm`.
///
/// # Errors
/// On every rank the same error: as [`crate::sketched_attention`]; with exact local blocks, a
/// prompt that does not end on a block boundary (its partial block would have to travel raw).
pub fn sketched_prefill<C: Communicator, T: DistElement>(
    comm: &C,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    rows: Range<usize>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    root: usize,
) -> Result<Vec<DecodingSnapshot<T>>> {
    let shards = Shards::gather_contiguous(comm, &rows, "prompt of a prefill")?;
    let n = shards.n;
    check_root(comm, root)?;
    if cfg.local_exact && !n.is_multiple_of(cfg.block.clamp(1, n)) {
        return Err(everywhere(
            FailureKind::Parameter,
            format!(
                "a prompt of {n} tokens does not end on a block of {}: the mixed variant's partial block would travel raw",
                cfg.block
            ),
        ));
    }
    // The keys stand in for the queries: pass 1 reads only keys and values.
    let local = ShardPlan::new(n, rows, cfg)
        .and_then(|plan| ShardInputs::new(k, k, v, map, cfg, plan)?.key_totals());
    let totals = agree(comm, local)?;
    let len = state_len(map, v.shape()[3]);
    let heads = totals.totals.len();
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let mut flat = vec![T::ZERO; heads * len];
    if rank > 0 {
        comm.process_at_rank(rank as i32 - 1)
            .receive_into(&mut flat[..]);
    }
    let mut running: Vec<Vec<T>> = flat.chunks(len).map(<[T]>::to_vec).collect();
    totals.add_to(&mut running);
    let flat: Vec<T> = running.concat();
    let last = size - 1;
    if rank < last {
        comm.process_at_rank(rank as i32 + 1).send(&flat[..]);
    }
    let whole = if root == last {
        flat
    } else if rank == last {
        comm.process_at_rank(root as i32).send(&flat[..]);
        Vec::new()
    } else if rank == root {
        let mut whole = vec![T::ZERO; heads * len];
        comm.process_at_rank(last as i32)
            .receive_into(&mut whole[..]);
        whole
    } else {
        Vec::new()
    };
    if rank != root {
        return Ok(Vec::new());
    }
    let fingerprint = poly_sketch::map_fingerprint(map);
    let (d, d_v) = (map.input_dim(), v.shape()[3]);
    Ok(whole
        .chunks(len)
        .map(|state| DecodingSnapshot {
            tokens: n,
            d,
            d_v,
            m: map.feature_dim(),
            map_fingerprint: fingerprint,
            state: state.to_vec(),
            partial_keys: Vec::new(),
            partial_values: Vec::new(),
        })
        .collect())
}

/// Gathers a prompt's keys and values, split across ranks as `segments` (any layout), into exact
/// KV caches on rank `root`: one per batch entry, holding the whole prompt in sequence order,
/// read with `cfg` (other ranks receive an empty list). Collective over `comm`.
///
/// # Errors
/// On every rank the same error: shards that do not tile one prompt; any rank's non-finite or
/// misshapen keys or values.
pub fn gather_kv_caches<C: Communicator, T: DistElement>(
    comm: &C,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    segments: &[Range<usize>],
    cfg: &AttentionConfig,
    root: usize,
) -> Result<Vec<KvCache<T>>> {
    let shards = Shards::gather(comm, segments, "prompt")?;
    check_root(comm, root)?;
    let [batch, kv_heads, rows, d] = k.shape();
    let d_v = v.shape()[3];
    let words = [batch, kv_heads, d, d_v].map(|x| x as u64);
    crate::shard::check_same(comm, "key and value shapes", &words)?;
    let shape_ok = rows == shards.rows(comm.rank() as usize) && v.shape()[..3] == k.shape()[..3];
    let local = if shape_ok {
        Ok(())
    } else {
        Err(poly_core::Error::InvalidParameter {
            name: "prompt shard",
            value: format!(
                "keys {:?} and values {:?} for the rows {segments:?}",
                k.shape(),
                v.shape()
            ),
            expected: "[batch, kv_heads, rows, d] keys and [batch, kv_heads, rows, d_v] values for this rank's rows",
        })
    };
    agree(comm, local)?;
    let rank = comm.rank() as usize;
    if rank != root {
        comm.process_at_rank(root as i32).send(k.as_slice());
        comm.process_at_rank(root as i32).send(v.as_slice());
        return agree(comm, Ok(Vec::new()));
    }
    // The root places every rank's segments at their global rows.
    let n = shards.n;
    let mut keys = vec![T::ZERO; batch * kv_heads * n * d];
    let mut values = vec![T::ZERO; batch * kv_heads * n * d_v];
    for (r, segs) in shards.segments.iter().enumerate() {
        let len = shards.rows(r);
        let (rk, rv) = if r == root {
            (k.as_slice().to_vec(), v.as_slice().to_vec())
        } else {
            let mut rk = vec![T::ZERO; batch * kv_heads * len * d];
            let mut rv = vec![T::ZERO; batch * kv_heads * len * d_v];
            comm.process_at_rank(r as i32).receive_into(&mut rk[..]);
            comm.process_at_rank(r as i32).receive_into(&mut rv[..]);
            (rk, rv)
        };
        place(&mut keys, &rk, segs, len, n, d);
        place(&mut values, &rv, segs, len, n, d_v);
    }
    let caches = (0..batch)
        .map(|b| {
            let mut cache = KvCache::new(cfg, kv_heads, d, d_v)?;
            let per_batch =
                |x: &[T], w: usize| x[b * kv_heads * n * w..(b + 1) * kv_heads * n * w].to_vec();
            cache.append(&per_batch(&keys, d), &per_batch(&values, d_v))?;
            Ok(cache)
        })
        .collect::<poly_core::Result<Vec<_>>>();
    agree(comm, caches)
}

/// A root every rank can name (the same check on every rank, so the same error everywhere).
fn check_root<C: Communicator>(comm: &C, root: usize) -> Result<()> {
    if root >= comm.size() as usize {
        return Err(everywhere(
            FailureKind::Parameter,
            format!(
                "root rank {root} of a communicator of {} ranks",
                comm.size()
            ),
        ));
    }
    Ok(())
}

/// Copies a rank's rows (`[heads, len, w]` per head, `segs` in local order) to their global rows
/// of `dst` (`[heads, n, w]`).
fn place<T: Copy>(dst: &mut [T], src: &[T], segs: &[Range<usize>], len: usize, n: usize, w: usize) {
    for (h, head) in src.chunks_exact(len * w).enumerate() {
        let mut at = 0;
        for s in segs {
            let rows = &head[at * w..(at + s.len()) * w];
            dst[(h * n + s.start) * w..(h * n + s.end) * w].copy_from_slice(rows);
            at += s.len();
        }
    }
}
