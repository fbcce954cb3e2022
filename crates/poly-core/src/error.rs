//! The one error type of poly-core: every variant names what the caller must fix.

use std::fmt;

/// Which input tensor an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorName {
    /// The queries, `q`.
    Query,
    /// The keys, `k`.
    Key,
    /// The values, `v`.
    Value,
    /// A caller's output buffer.
    Output,
}

impl fmt::Display for TensorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TensorName::Query => "q",
            TensorName::Key => "k",
            TensorName::Value => "v",
            TensorName::Output => "out",
        })
    }
}

/// Names of the four axes of a `[batch, heads, seq, dim]` tensor.
pub const AXIS_NAMES: [&str; 4] = ["batch", "heads", "seq", "dim"];

/// Position of one attention row: used by errors that are detected while normalizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowPosition {
    /// Index on the batch axis.
    pub batch: usize,
    /// Index on the heads axis.
    pub head: usize,
    /// Index of the query row.
    pub row: usize,
}

impl RowPosition {
    /// The row `row` of head `head` in batch entry `batch`.
    pub fn new(batch: usize, head: usize, row: usize) -> Self {
        RowPosition { batch, head, row }
    }
}

impl fmt::Display for RowPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {}, head {}, row {}",
            self.batch, self.head, self.row
        )
    }
}

/// Everything that can go wrong in poly-core.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer does not hold `product(shape)` elements.
    BufferLength {
        /// The tensor whose buffer is wrong.
        tensor: TensorName,
        /// Elements its shape needs.
        expected: usize,
        /// Elements the buffer holds.
        found: usize,
    },
    /// A tensor axis disagrees with the other tensors.
    ShapeMismatch {
        /// The tensor that disagrees.
        tensor: TensorName,
        /// The axis that disagrees.
        axis: &'static str,
        /// The length the other tensors imply.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// Grouped-query attention: k and v have `kv_heads` heads, which must divide q's `heads` (each
    /// group of `heads / kv_heads` query heads shares one key/value head).
    HeadGroups {
        /// q's head count.
        heads: usize,
        /// k's (and v's) head count.
        kv_heads: usize,
    },
    /// A tensor has an axis of length zero.
    EmptyDimension {
        /// The tensor with the empty axis.
        tensor: TensorName,
        /// The empty axis.
        axis: &'static str,
    },
    /// A NaN or infinity in an input tensor; `index` is `[batch, head, seq, dim]`.
    NonFinite {
        /// The tensor holding the value.
        tensor: TensorName,
        /// Its `[batch, head, row, column]` index.
        index: [usize; 4],
        /// The value (NaN or ±∞).
        value: f64,
    },
    /// A configuration value is out of its domain.
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What the parameter accepts.
        expected: &'static str,
    },
    /// Every visible score of a row is zero, so the `Sum` normalizer is zero.
    AllScoresZero {
        /// The row.
        at: RowPosition,
    },
    /// The normalizer of a row is zero or so small relative to the magnitude of its terms that the
    /// output would be noise (signed weights of odd degrees cancelling).
    IllConditionedNormalizer {
        /// The row.
        at: RowPosition,
        /// `|Σ w|` over the magnitude of its terms (`Σ |w|` in the exact engine; in the linear
        /// engine, for maps with signed weights, `Σ_f |φ(q)_f| Σ_j |φ(k_j)_f|`, the magnitude of
        /// the feature products it adds); rows at or below the tolerance are rejected.
        ratio: f64,
        /// The tolerance of the element type (`Element::NORMALIZER_TOLERANCE`).
        tolerance: f64,
    },
    /// A row sees no key under the causal mask (n_q > n_k), so `Sum`/softmax are undefined there.
    NoVisibleKeys {
        /// The row.
        at: RowPosition,
    },
    /// A size derived from the input (an output, a feature matrix, a sketch, a state) would
    /// exceed the memory budget ([`crate::memory_budget`]) or overflow the address space.
    ResourceLimit {
        /// What would have been allocated.
        what: &'static str,
        /// The bytes it needs (`u64::MAX` when the size itself overflows).
        needed_bytes: u64,
        /// The budget.
        limit_bytes: u64,
    },
    /// The result does not fit the element type (scores overflowing, or `None` normalization).
    Overflow {
        /// The row.
        at: RowPosition,
        /// What overflowed.
        what: &'static str,
    },
}

impl Error {
    /// The same error with its row position (if it names one) moved by `f`: for callers that
    /// computed a piece of a larger problem (a packed sequence, one batch entry, one k/v head's
    /// group) and report positions in the whole.
    #[must_use]
    pub fn moved(self, f: impl Fn(RowPosition) -> RowPosition) -> Self {
        match self {
            Error::AllScoresZero { at } => Error::AllScoresZero { at: f(at) },
            Error::IllConditionedNormalizer {
                at,
                ratio,
                tolerance,
            } => Error::IllConditionedNormalizer {
                at: f(at),
                ratio,
                tolerance,
            },
            Error::NoVisibleKeys { at } => Error::NoVisibleKeys { at: f(at) },
            Error::Overflow { at, what } => Error::Overflow { at: f(at), what },
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferLength {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor {tensor}: buffer holds {found} elements, its shape needs {expected}"
            ),
            Error::ShapeMismatch {
                tensor,
                axis,
                expected,
                found,
            } => write!(
                f,
                "tensor {tensor}: axis {axis} has length {found}, expected {expected}"
            ),
            Error::HeadGroups { heads, kv_heads } => write!(
                f,
                "tensor k: {kv_heads} heads do not divide q's {heads} heads (grouped-query \
                 attention shares each k/v head among a whole group of query heads)"
            ),
            Error::EmptyDimension { tensor, axis } => {
                write!(f, "tensor {tensor}: axis {axis} has length 0")
            }
            Error::NonFinite {
                tensor,
                index,
                value,
            } => write!(
                f,
                "tensor {tensor}: non-finite value {value} at index {index:?} ([batch, head, seq, dim])"
            ),
            Error::InvalidParameter {
                name,
                value,
                expected,
            } => write!(f, "invalid {name} = {value}: expected {expected}"),
            Error::AllScoresZero { at } => write!(
                f,
                "{at}: all visible scores are zero, so the Sum normalizer is zero"
            ),
            Error::IllConditionedNormalizer {
                at,
                ratio,
                tolerance,
            } => write!(
                f,
                "{at}: normalizer is ill-conditioned (|sum w| / magnitude of its terms = {ratio:.3e} \
                 < {tolerance:.0e}); odd degrees and signed sketches give weights that cancel — use \
                 an even degree (sketched: the self-tensored PolySketch) or OnePlusSum/None"
            ),
            Error::NoVisibleKeys { at } => write!(
                f,
                "{at}: no key is visible under the causal mask (n_q > n_k), \
                 so this normalization is undefined"
            ),
            Error::Overflow { at, what } => write!(f, "{at}: {what} overflows the element type"),
            Error::ResourceLimit {
                what,
                needed_bytes,
                limit_bytes,
            } => {
                let needed = if *needed_bytes == u64::MAX {
                    "more than 2^64 bytes".to_owned()
                } else {
                    format!("{needed_bytes} bytes")
                };
                write!(
                    f,
                    "{what} would need {needed}, over the memory budget of {limit_bytes} bytes \
                     (raise it with --max-memory / set_memory_budget if that is intended)"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// Result alias for poly-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
