//! Sketched (linear) attention over a sequence split across ranks: two local passes around one
//! scan of fixed-size states (LASP-2; flash-linear-attention's context parallelism).
//!
//! Pass 1 computes, on every rank at once, the state `Σ φ(k)[v | 1]ᵀ` of each piece of its shard
//! ([`poly_sketch::ShardInputs::key_totals`]). The scan gives each rank the state of every row before it
//! (causal) or of the whole sequence (non-causal); pass 2 computes the outputs from it
//! ([`poly_sketch::ShardInputs::outputs`]). Communication is one state per k/v head, `m (d_v + 2)`
//! values, per rank, whatever n.
//!
//! [`StateScan::Ordered`] passes the running state from rank to rank (P − 1 hops, each adding
//! that rank's pieces in sequence order), which repeats the single-process engine's additions:
//! when every shard boundary lies on the engine's chunk grid ([`poly_sketch::scan_chunks`]) the
//! result is bit-identical to [`poly_sketch::linear_attention`]. [`StateScan::Tree`] uses
//! `MPI_Exscan` / `MPI_Allreduce` (log P steps; the association of the sum is the library's).

use crate::element::DistElement;
use crate::error::{Result, agree};
use crate::ring::{CommStats, fnv};
use crate::shard::{Shards, check_same};
use mpi::collective::SystemOperation;
use mpi::traits::{Communicator, CommunicatorCollectives, Destination, Root, Source};
use poly_core::{Mask, Tensor, TensorRef};
use poly_sketch::{
    FeatureMap, LinearAttentionConfig, ShardInputs, ShardPlan, ShardTotals, map_fingerprint,
    state_len,
};
use std::ops::Range;
use std::time::Instant;

/// How the ranks combine their states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StateScan {
    /// Rank to rank in sequence order: bit-identical to one process on aligned shards; P − 1
    /// sequential hops of one state each.
    #[default]
    Ordered,
    /// `MPI_Exscan` (causal) or `MPI_Allreduce` (non-causal): log P steps, equal to rounding.
    Tree,
}

/// The numbers every rank must agree on for sketched attention.
fn sketch_words<T: DistElement>(
    q: &TensorRef<'_, T>,
    k: &TensorRef<'_, T>,
    v: &TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    scan: StateScan,
) -> Vec<u64> {
    let [batch, heads, _, d] = q.shape();
    let mut words = vec![
        batch as u64,
        heads as u64,
        k.shape()[1] as u64,
        d as u64,
        v.shape()[3] as u64,
    ];
    words.push(map.feature_dim() as u64);
    words.push(map_fingerprint(map).to_bits());
    words.push(fnv(format!(
        "{:?} {scan:?}",
        cfg.with_threads(poly_core::Threads::Global)
    )
    .as_bytes()));
    words
}

/// Sketched attention of this rank's shard: `q`, `k`, `v` hold the global rows `rows` (the
/// same for all three; ranks in sequence order: rank r's rows come before rank r + 1's), and the
/// result is this rank's output rows, equal to those of [`poly_sketch::linear_attention`] on the
/// whole sequence. Every rank passes the same map (built from the same seed) and configuration.
/// Collective over `comm`.
///
/// # Errors
/// On every rank the same [`crate::DistError`]: shards that are not contiguous in rank order;
/// shapes, maps or configurations that differ between ranks; any rank's input or row error; with
/// exact local blocks, shard boundaries off the block grid.
// The engine's own arguments (q, k, v, map, config) plus the shard and the scan: no grouping of
// them would be clearer than the names.
#[allow(clippy::too_many_arguments)]
pub fn sketched_attention<C: Communicator, T: DistElement>(
    comm: &C,
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    rows: Range<usize>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    scan: StateScan,
) -> Result<(Tensor<T>, CommStats)> {
    let shards = Shards::gather_contiguous(comm, &rows, "sequence of sketched attention")?;
    check_same(
        comm,
        "shapes, maps and configurations",
        &sketch_words(&q, &k, &v, map, cfg, scan),
    )?;
    let start = Instant::now();
    let local = ShardPlan::new(shards.n, rows, cfg).and_then(|plan| {
        let inputs = ShardInputs::new(q, k, v, map, cfg, plan)?;
        let totals = inputs.key_totals()?;
        Ok((inputs, totals))
    });
    let (inputs, totals) = agree(comm, local)?;
    let mut stats = CommStats {
        compute_seconds: start.elapsed().as_secs_f64(),
        ..CommStats::default()
    };
    let len = state_len(map, v.shape()[3]);
    let waited = Instant::now();
    let before = combine(
        comm,
        &totals,
        len,
        cfg.mask == Mask::Causal,
        scan,
        &mut stats,
    );
    stats.wait_seconds = waited.elapsed().as_secs_f64();
    let start = Instant::now();
    let out = inputs.outputs(&totals, &before);
    stats.compute_seconds += start.elapsed().as_secs_f64();
    stats.blocks_computed = inputs.plan().pieces.len();
    agree(comm, out).map(|out| (out, stats))
}

/// The state each rank reads: of every row before it (causal) or of the whole sequence.
fn combine<C: Communicator, T: DistElement>(
    comm: &C,
    totals: &ShardTotals<T>,
    len: usize,
    causal: bool,
    scan: StateScan,
    stats: &mut CommStats,
) -> Vec<Vec<T>> {
    let heads = totals.totals.len();
    let (size, rank) = (comm.size() as usize, comm.rank() as usize);
    let mut flat = vec![T::ZERO; heads * len];
    match scan {
        StateScan::Ordered => {
            // The running state of every earlier rank, then this rank's pieces added in order.
            if rank > 0 {
                comm.process_at_rank(rank as i32 - 1)
                    .receive_into(&mut flat[..]);
            }
            let mut running = split(&flat, len);
            totals.add_to(&mut running);
            let running: Vec<T> = running.concat();
            if rank + 1 < size {
                comm.process_at_rank(rank as i32 + 1).send(&running[..]);
                stats.bytes_sent += (running.len() * size_of::<T>()) as u64;
            }
            if !causal {
                // The last rank's running state is the whole sequence's.
                flat = running;
                comm.process_at_rank(size as i32 - 1)
                    .broadcast_into(&mut flat[..]);
                if rank + 1 == size {
                    stats.bytes_sent += (flat.len() * size_of::<T>() * (size - 1)) as u64;
                }
            }
        }
        StateScan::Tree => {
            let mine: Vec<T> = totals.sum().concat();
            if causal {
                comm.exclusive_scan_into(&mine[..], &mut flat[..], SystemOperation::sum());
                if rank == 0 {
                    // MPI leaves rank 0's result undefined: nothing comes before it.
                    flat.fill(T::ZERO);
                }
            } else {
                comm.all_reduce_into(&mine[..], &mut flat[..], SystemOperation::sum());
            }
            // log2 P rounds of one state (the recursive-doubling model; the library decides).
            let rounds = (size as f64).log2().ceil() as u64;
            stats.bytes_sent += rounds * (mine.len() * size_of::<T>()) as u64;
        }
    }
    split(&flat, len)
}

fn split<T: Clone>(flat: &[T], len: usize) -> Vec<Vec<T>> {
    flat.chunks(len.max(1)).map(<[T]>::to_vec).collect()
}
