//! The one error type of poly-core: every variant names what the caller must fix.

use std::fmt;

/// Which input tensor an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TensorName {
    Query,
    Key,
    Value,
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
    pub batch: usize,
    pub head: usize,
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
        tensor: TensorName,
        expected: usize,
        found: usize,
    },
    /// A tensor axis disagrees with the other tensors.
    ShapeMismatch {
        tensor: TensorName,
        axis: &'static str,
        expected: usize,
        found: usize,
    },
    /// A tensor has an axis of length zero.
    EmptyDimension {
        tensor: TensorName,
        axis: &'static str,
    },
    /// A NaN or infinity in an input tensor; `index` is `[batch, head, seq, dim]`.
    NonFinite {
        tensor: TensorName,
        index: [usize; 4],
        value: f64,
    },
    /// A configuration value is out of its domain.
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Every visible score of a row is zero, so the `Sum` normalizer is zero.
    AllScoresZero { at: RowPosition },
    /// The normalizer of a row is zero or so small relative to the magnitude of its terms that the
    /// output would be noise (signed weights of odd degrees cancelling).
    IllConditionedNormalizer {
        at: RowPosition,
        /// `|Σ w| / Σ |w|` for the row; rows below the tolerance are rejected.
        ratio: f64,
        tolerance: f64,
    },
    /// A row sees no key under the causal mask (n_q > n_k), so `Sum`/softmax are undefined there.
    NoVisibleKeys { at: RowPosition },
    /// The result does not fit the element type (scores overflowing, or `None` normalization).
    Overflow { at: RowPosition, what: &'static str },
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
                "{at}: normalizer is ill-conditioned (|sum w| / sum |w| = {ratio:.3e} < {tolerance:.0e}); \
                 odd degrees give signed weights that cancel — use an even degree or OnePlusSum/None"
            ),
            Error::NoVisibleKeys { at } => write!(
                f,
                "{at}: no key is visible under the causal mask (n_q > n_k), \
                 so this normalization is undefined"
            ),
            Error::Overflow { at, what } => write!(f, "{at}: {what} overflows the element type"),
        }
    }
}

impl std::error::Error for Error {}

/// Result alias for poly-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
