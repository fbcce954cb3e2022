//! Exact attention over a sequence split across ranks: ring attention (Liu et al. 2023).
//!
//! Each rank keeps its query rows and passes its keys and values around the ring: at step s it
//! folds in the key shard of rank `r − s` while sending that shard on to `r + 1` and receiving
//! the next from `r − 1`, so after P steps every query has seen every key. The statistics are the
//! tiled engine's (running maximum, sums and `Σ w' v`, docs/math.md §2.3) through
//! [`poly_core::PartialAttention`], which merges blocks exactly in any order. A causal ring skips
//! the blocks that lie entirely in a rank's future; with [`crate::ShardLayout::ZigZag`] every
//! rank then does the same work.

use crate::element::DistElement;
use crate::error::{FailureKind, Result, agree, everywhere};
use crate::progress::{Overlap, compute_while_communicating};
use crate::shard::{Shards, check_same};
use mpi::traits::{Communicator, Destination, Source};
use poly_core::{AttentionConfig, PartialAttention, Tensor, TensorRef};
use std::ops::Range;

/// What one rank did in a distributed call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Bytes this rank sent to other ranks (payload only).
    pub bytes_sent: u64,
    /// Blocks of keys this rank computed against (the rest were skipped as invisible).
    pub blocks_computed: usize,
    /// Seconds of local computation.
    pub compute_seconds: f64,
    /// Seconds spent waiting for communication that computation did not hide.
    pub wait_seconds: f64,
}

impl CommStats {
    fn add(&mut self, o: Overlap) {
        self.compute_seconds += o.compute_seconds;
        self.wait_seconds += o.wait_seconds;
    }
}

/// The numbers every rank must agree on: shapes and configuration.
pub(crate) fn config_words(
    cfg: &AttentionConfig,
    shape: [usize; 4],
    kv_heads: usize,
    d_v: usize,
    elem: usize,
) -> Vec<u64> {
    let mut words = vec![
        shape[0] as u64,
        shape[1] as u64,
        kv_heads as u64,
        shape[3] as u64,
        d_v as u64,
        elem as u64,
    ];
    // The configuration's Debug form covers every field; hashing it keeps the message short.
    words.push(fnv(format!(
        "{:?}",
        cfg.with_threads(poly_core::Threads::Global)
    )
    .as_bytes()));
    words
}

/// FNV-1a: a stable hash, the same in every process.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Exact attention of this rank's shard: `q` (`[batch, heads, rows, d]`), `k` (`[batch,
/// kv_heads, rows, d]`) and `v` (`[batch, kv_heads, rows, d_v]`) hold the global sequence rows
/// `segments` (in local order; the same rows for queries, keys and values), and the result is
/// this rank's output rows `[batch, heads, rows, d_v]`, equal to the corresponding rows of
/// [`poly_core::attention`] on the whole sequence. Collective over `comm`.
///
/// # Errors
/// On every rank the same [`crate::DistError`]: shards that do not tile one sequence; shapes or
/// configurations that differ between ranks; any rank's input error (indexed in global rows);
/// any row error.
pub fn ring_attention<C: Communicator, T: DistElement>(
    comm: &C,
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    segments: &[Range<usize>],
    cfg: &AttentionConfig,
) -> Result<(Tensor<T>, CommStats)> {
    let shards = Shards::gather(comm, segments, "sequence")?;
    let [batch, _, _, d] = q.shape();
    let (kv_heads, d_v) = (k.shape()[1], v.shape()[3]);
    check_same(
        comm,
        "shapes and configurations",
        &config_words(cfg, q.shape(), kv_heads, d_v, size_of::<T>()),
    )?;
    let n = shards.n;
    // MPI counts elements in a C int: a shard message may not hold more.
    let widest = (0..shards.segments.len())
        .map(|r| shards.rows(r))
        .max()
        .unwrap_or(0);
    if widest.saturating_mul(batch * kv_heads * d.max(d_v)) > i32::MAX as usize {
        return Err(everywhere(
            FailureKind::Parameter,
            format!(
                "a key shard of {widest} rows × {batch}·{kv_heads} heads × {} values exceeds MPI's \
             2^31 − 1 elements per message: use more ranks",
                d.max(d_v)
            ),
        ));
    }
    let local = PartialAttention::new(q, segments, n, n, kv_heads, d_v, cfg)
        .and_then(|p| p.prepare_keys(k, v, segments).map(|keys| (p, keys)));
    let (mut partial, keys) = agree(comm, local)?;
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let (left, right) = ((rank + size - 1) % size, (rank + 1) % size);
    let mut stats = CommStats::default();
    // Two pairs of buffers, each as long as the widest shard, swapped every step: the block being
    // computed and sent, and the one being received (no allocation per step).
    let width = |w: usize| widest * batch * kv_heads * w;
    let (mut cur_k, mut cur_v) = (keys, v.as_slice().to_vec());
    cur_k.resize(width(d), T::ZERO);
    cur_v.resize(width(d_v), T::ZERO);
    let (mut next_k, mut next_v) = (vec![T::ZERO; width(d)], vec![T::ZERO; width(d_v)]);
    let block_len = |owner: usize, w: usize| shards.rows(owner) * batch * kv_heads * w;
    let mut failure = None;
    for step in 0..size {
        let owner = (rank + size - step) % size;
        let visible = partial.sees(&shards.segments[owner]);
        stats.blocks_computed += usize::from(visible);
        let mut compute = |k: &[T], v: &[T]| {
            if visible {
                partial.accumulate(k, v, &shards.segments[owner])
            } else {
                Ok(())
            }
        };
        let (k_len, v_len) = (block_len(owner, d), block_len(owner, d_v));
        let result = if step + 1 < size {
            let incoming = (owner + size - 1) % size;
            let (in_k, in_v) = (block_len(incoming, d), block_len(incoming, d_v));
            let tag = 2 * step as i32;
            let (result, overlap) = mpi::request::scope(|scope| {
                let requests = vec![
                    comm.process_at_rank(right as i32).immediate_send_with_tag(
                        scope,
                        &cur_k[..k_len],
                        tag,
                    ),
                    comm.process_at_rank(right as i32).immediate_send_with_tag(
                        scope,
                        &cur_v[..v_len],
                        tag + 1,
                    ),
                    comm.process_at_rank(left as i32)
                        .immediate_receive_into_with_tag(scope, &mut next_k[..in_k], tag),
                    comm.process_at_rank(left as i32)
                        .immediate_receive_into_with_tag(scope, &mut next_v[..in_v], tag + 1),
                ];
                compute_while_communicating(requests, || compute(&cur_k[..k_len], &cur_v[..v_len]))
            });
            stats.bytes_sent += ((k_len + v_len) * size_of::<T>()) as u64;
            stats.add(overlap);
            std::mem::swap(&mut cur_k, &mut next_k);
            std::mem::swap(&mut cur_v, &mut next_v);
            result
        } else {
            let start = std::time::Instant::now();
            let result = compute(&cur_k[..k_len], &cur_v[..v_len]);
            stats.compute_seconds += start.elapsed().as_secs_f64();
            result
        };
        if failure.is_none() {
            failure = result.err();
        }
    }
    let out = match failure {
        Some(e) => Err(e),
        None => partial.finish(),
    };
    agree(comm, out).map(|out| (out, stats))
}
