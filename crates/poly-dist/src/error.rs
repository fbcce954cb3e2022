//! The one error type of poly-dist, and how the ranks agree on it.
//!
//! A rank that fails must not leave the others waiting in a collective that it never enters. So
//! every phase that can fail locally (validating a shard, normalizing rows) ends in [`agree`]: an
//! all-reduce of "the first failing rank", then that rank's error broadcast to everyone. Each rank
//! then returns the *same* [`DistError`], and no rank has gone on to the next exchange.

use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use std::fmt;

/// What kind of failure a rank reported (the variant of its [`poly_core::Error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// A NaN or infinity in an input.
    NonFinite,
    /// Shapes that disagree, empty axes, head counts that do not group.
    Shape,
    /// A parameter out of its domain (including shards that do not fit the sequence).
    Parameter,
    /// A row that cannot be normalized (zero or ill-conditioned normalizer, overflow, no key).
    Row,
    /// A size beyond the memory budget.
    Resources,
    /// Anything else.
    Other,
}

impl FailureKind {
    fn of(e: &poly_core::Error) -> Self {
        use poly_core::Error as E;
        match e {
            E::NonFinite { .. } => FailureKind::NonFinite,
            E::ShapeMismatch { .. }
            | E::EmptyDimension { .. }
            | E::HeadGroups { .. }
            | E::BufferLength { .. } => FailureKind::Shape,
            E::InvalidParameter { .. } => FailureKind::Parameter,
            E::AllScoresZero { .. }
            | E::IllConditionedNormalizer { .. }
            | E::NoVisibleKeys { .. }
            | E::Overflow { .. } => FailureKind::Row,
            E::ResourceLimit { .. } => FailureKind::Resources,
            _ => FailureKind::Other,
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Self {
        [
            FailureKind::NonFinite,
            FailureKind::Shape,
            FailureKind::Parameter,
            FailureKind::Row,
            FailureKind::Resources,
        ]
        .into_iter()
        .find(|k| k.code() == code)
        .unwrap_or(FailureKind::Other)
    }
}

/// A distributed call failed; every rank of the communicator returns an equal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistError {
    /// The lowest rank that failed; `None` when every rank found the problem in data they all
    /// hold (shards that do not fit together, shapes that differ between ranks).
    pub rank: Option<usize>,
    /// What kind of failure it was.
    pub kind: FailureKind,
    /// Its error as that rank displayed it (tensor, global index, expected and found).
    pub message: String,
}

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rank {
            Some(rank) => write!(f, "rank {rank}: {}", self.message),
            None => write!(f, "every rank: {}", self.message),
        }
    }
}

impl std::error::Error for DistError {}

/// Results of poly-dist.
pub type Result<T> = std::result::Result<T, DistError>;

/// Every rank calls this with its own outcome of one phase; all get `Ok` only if all succeeded,
/// otherwise all get the error of the lowest failing rank. Costs one all-reduce of one integer
/// (plus a broadcast when something failed).
///
/// # Errors
/// The lowest failing rank's error, on every rank.
pub fn agree<C: Communicator, R>(comm: &C, local: poly_core::Result<R>) -> Result<R> {
    agree_described(
        comm,
        local.map_err(|e| (FailureKind::of(&e), e.to_string())),
    )
}

/// [`agree`] for failures that are not poly-core errors (a file a rank cannot read, say): each
/// comes with its kind and its message.
///
/// # Errors
/// The lowest failing rank's error, on every rank.
pub fn agree_described<C: Communicator, R>(
    comm: &C,
    local: std::result::Result<R, (FailureKind, String)>,
) -> Result<R> {
    let size = comm.size();
    let mine = if local.is_err() { comm.rank() } else { size };
    let mut first = size;
    comm.all_reduce_into(&mine, &mut first, mpi::collective::SystemOperation::min());
    if first == size {
        return Ok(
            local.unwrap_or_else(|_| unreachable!("every rank, this one included, succeeded"))
        );
    }
    let root = comm.process_at_rank(first);
    let (mut kind, mut bytes) = match &local {
        Err((kind, message)) if comm.rank() == first => (kind.code(), message.clone().into_bytes()),
        _ => (0, Vec::new()),
    };
    let mut len = bytes.len() as u64;
    root.broadcast_into(&mut kind);
    root.broadcast_into(&mut len);
    bytes.resize(len as usize, 0);
    root.broadcast_into(&mut bytes[..]);
    Err(DistError {
        rank: Some(first as usize),
        kind: FailureKind::from_code(kind),
        message: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// An error found identically on every rank (from data all of them hold), so no agreement is
/// needed: shards that do not fit together, shapes that differ between ranks.
pub(crate) fn everywhere(kind: FailureKind, message: String) -> DistError {
    DistError {
        rank: None,
        kind,
        message,
    }
}
