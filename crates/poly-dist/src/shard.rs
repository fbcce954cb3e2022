//! Which global rows each rank holds, and the metadata every rank learns about every other.
//!
//! A rank's shard is a list of global row ranges in its local order: one range for contiguous
//! sharding, two for zig-zag (chunks `r` and `2P − 1 − r` of `2P` near-equal chunks), which gives
//! every rank the same causal work (Brandon et al.'s striped / zig-zag load balancing for ring
//! attention: each rank holds one early and one late chunk).

use crate::error::{FailureKind, Result, everywhere};
use mpi::traits::{Communicator, CommunicatorCollectives};
use std::ops::Range;

/// How a sequence of `n` rows is split over `P` ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardLayout {
    /// Rank r holds one range, the r-th of P near-equal ones (the first `n mod P` one row longer).
    Contiguous,
    /// Rank r holds chunks r and 2P − 1 − r of 2P near-equal chunks: equal causal work per rank.
    ZigZag,
}

impl ShardLayout {
    /// The global rows rank `rank` of `ranks` holds, in its local order.
    /// (None when `rank` is not below `ranks`.)
    pub fn segments(self, n: usize, ranks: usize, rank: usize) -> Vec<Range<usize>> {
        if rank >= ranks {
            return Vec::new();
        }
        let piece = |i: usize, parts: usize| {
            let (base, extra) = (n / parts, n % parts);
            let start = i * base + i.min(extra);
            start..start + base + usize::from(i < extra)
        };
        match self {
            ShardLayout::Contiguous => vec![piece(rank, ranks)],
            ShardLayout::ZigZag => vec![
                piece(rank, 2 * ranks),
                piece(2 * ranks - 1 - rank, 2 * ranks),
            ],
        }
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect()
    }
}

/// The shards of every rank, learned by one all-gather, checked to tile `0..n` exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shards {
    /// Per rank, its global row ranges in local order.
    pub segments: Vec<Vec<Range<usize>>>,
    /// Rows of the whole sequence.
    pub n: usize,
}

impl Shards {
    /// Gathers every rank's `mine` (its global row ranges for `what`) and checks that together
    /// they cover `0..n` once, with `n` their total. Collective.
    ///
    /// # Errors
    /// (On every rank alike.) Empty ranges, overlaps or gaps.
    pub fn gather<C: Communicator>(comm: &C, mine: &[Range<usize>], what: &str) -> Result<Self> {
        let flat: Vec<u64> = mine
            .iter()
            .flat_map(|r| [r.start as u64, r.end as u64])
            .collect();
        let lists = all_gather_lists(comm, &flat);
        let segments: Vec<Vec<Range<usize>>> = lists
            .iter()
            .map(|l| {
                l.chunks_exact(2)
                    .map(|p| p[0] as usize..p[1] as usize)
                    .collect()
            })
            .collect();
        let mut all: Vec<Range<usize>> = segments.iter().flatten().cloned().collect();
        all.sort_by_key(|r| r.start);
        let n: usize = all.iter().map(|r| r.len()).sum();
        let mut at = 0;
        for r in &all {
            if r.start != at || r.is_empty() {
                return Err(everywhere(
                    FailureKind::Parameter,
                    format!(
                        "the {what} shards of the ranks {segments:?} do not tile one sequence: \
                         expected a non-empty range starting at row {at}, found {r:?}"
                    ),
                ));
            }
            at = r.end;
        }
        Ok(Shards { segments, n })
    }

    /// [`Shards::gather`] of one range per rank, which must follow rank order: rank r's rows
    /// before rank r + 1's (what the state scans, which follow the sequence, need). Collective.
    ///
    /// # Errors
    /// (On every rank alike.) As [`Shards::gather`], and shards out of rank order.
    pub fn gather_contiguous<C: Communicator>(
        comm: &C,
        rows: &Range<usize>,
        what: &str,
    ) -> Result<Self> {
        let shards = Self::gather(comm, std::slice::from_ref(rows), what)?;
        if !shards.is_contiguous_in_rank_order() {
            return Err(everywhere(
                FailureKind::Parameter,
                format!(
                    "the {what} needs one contiguous shard per rank in rank order, found {:?}",
                    shards.segments
                ),
            ));
        }
        Ok(shards)
    }

    /// Whether every rank holds one range and rank order is sequence order.
    pub fn is_contiguous_in_rank_order(&self) -> bool {
        let mut at = 0;
        self.segments.iter().all(|s| match s.as_slice() {
            [r] if r.start == at => {
                at = r.end;
                true
            }
            _ => false,
        })
    }

    /// Rows rank `rank` holds.
    pub fn rows(&self, rank: usize) -> usize {
        self.segments[rank].iter().map(|r| r.len()).sum()
    }
}

/// Every rank's list of numbers, in rank order (an all-gather of the counts, then of the lists).
pub(crate) fn all_gather_lists<C: Communicator>(comm: &C, mine: &[u64]) -> Vec<Vec<u64>> {
    let size = comm.size() as usize;
    let count = mine.len() as i32;
    let mut counts = vec![0i32; size];
    comm.all_gather_into(&count, &mut counts[..]);
    let displs: Vec<i32> = counts
        .iter()
        .scan(0, |at, &c| {
            let d = *at;
            *at += c;
            Some(d)
        })
        .collect();
    let total: i32 = counts.iter().sum();
    let mut flat = vec![0u64; total as usize];
    {
        let mut partition =
            mpi::datatype::PartitionMut::new(&mut flat[..], &counts[..], &displs[..]);
        comm.all_gather_varcount_into(mine, &mut partition);
    }
    counts
        .iter()
        .zip(&displs)
        .map(|(&c, &d)| flat[d as usize..(d + c) as usize].to_vec())
        .collect()
}

/// Checks that every rank passes the same numbers (shapes, configuration), so a mismatch is one
/// error on every rank rather than a hang in an exchange sized by the wrong shape.
///
/// # Errors
/// (On every rank alike.) The first rank whose numbers differ from rank 0's.
pub(crate) fn check_same<C: Communicator>(comm: &C, what: &str, mine: &[u64]) -> Result<()> {
    let lists = all_gather_lists(comm, mine);
    match lists.iter().position(|l| l != &lists[0]) {
        None => Ok(()),
        Some(r) => Err(everywhere(
            FailureKind::Shape,
            format!(
                "{what} differ between ranks: rank 0 has {:?}, rank {r} has {:?}",
                lists[0], lists[r]
            ),
        )),
    }
}

/// The rows `segments` (global, in order) of every head of `t` (`[batch, heads, n, w]`), as one
/// `[batch, heads, rows, w]` tensor: a rank's shard of a tensor that it holds whole.
///
/// # Errors
/// A segment beyond `n`.
pub fn shard_rows<T: Copy + Default>(
    t: poly_core::TensorRef<'_, T>,
    segments: &[Range<usize>],
) -> poly_core::Result<poly_core::Tensor<T>> {
    let [batch, heads, n, w] = t.shape();
    if let Some(bad) = segments.iter().find(|s| s.end > n || s.start > s.end) {
        return Err(poly_core::Error::InvalidParameter {
            name: "shard rows",
            value: format!("{bad:?} of {n} rows"),
            expected: "row ranges inside the sequence axis",
        });
    }
    let rows: usize = segments.iter().map(|s| s.len()).sum();
    let mut out = Vec::with_capacity(batch * heads * rows * w);
    for head in t.as_slice().chunks_exact(n * w) {
        for s in segments {
            out.extend_from_slice(&head[s.start * w..s.end * w]);
        }
    }
    poly_core::Tensor::from_vec([batch, heads, rows, w], out)
}
