//! # poly-dist: sequence-parallel attention over MPI
//!
//! The sequence axis is split across the ranks of an MPI communicator; each rank passes its shard
//! of q, k and v and receives its shard of the output, equal to the single-process engines'.
//!
//! * [`ring_attention`]: exact polynomial and softmax attention by ring (Liu et al. 2023): key and
//!   value shards circulate with non-blocking sends overlapped with the local tiles, causal rings
//!   skip the shards in a rank's future, and [`ShardLayout::ZigZag`] balances the causal work;
//! * [`sketched_attention`]: linear (sketched) attention by two local passes around one scan of
//!   the fixed-size states — `O(m·d_v)` values per rank whatever n; [`StateScan::Ordered`] is
//!   bit-identical to one process on aligned shards;
//! * [`sketched_prefill`], [`gather_kv_caches`] and the snapshot senders: a prompt prefilled
//!   across ranks continues decoding on one.
//!
//! Every call is collective, and every failure — one rank's bad shard, a row that cannot be
//! normalized — reaches every rank as the same [`DistError`]: no rank is left waiting
//! (docs/distributed.md). MPI is used through the `mpi` crate (rsmpi); initialize it with
//! [`initialize`], which asks for the funneled threading level the overlap needs.

mod element;
mod error;
mod handoff;
mod progress;
mod ring;
mod scan;
mod shard;

pub use element::DistElement;
pub use error::{DistError, FailureKind, Result, agree, agree_described};
pub use handoff::{
    gather_kv_caches, receive_decoding_snapshot, receive_kv_snapshot, send_decoding_snapshot,
    send_kv_snapshot, sketched_prefill,
};
pub use progress::{Overlap, compute_while_communicating};
pub use ring::{CommStats, ring_attention};
pub use scan::{StateScan, sketched_attention};
pub use shard::{ShardLayout, Shards, shard_rows};

/// Re-exported so callers need not name the `mpi` crate's version themselves.
pub use mpi;

/// Initializes MPI with `MPI_THREAD_FUNNELED` (only the calling thread talks to MPI; rayon's
/// workers compute). `None` if MPI was already initialized, or if the library cannot promise
/// funneled threading.
pub fn initialize() -> Option<mpi::environment::Universe> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
    (level >= mpi::Threading::Funneled).then_some(universe)
}
