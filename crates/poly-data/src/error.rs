//! Errors of reading and writing tensor files: each names the file and what is wrong with it.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
/// Everything that can go wrong reading or writing tensors and generating data; each variant names the file or parameter.
pub enum DataError {
    /// The file could not be opened, read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a valid `.npy`/`.safetensors` file (corrupt header, truncated data, …).
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The element type is not f32 or f64.
    UnsupportedDType {
        /// The file.
        path: PathBuf,
        /// The dtype it holds.
        dtype: String,
    },
    /// The tensor has a rank attention cannot use.
    BadRank {
        /// The file.
        path: PathBuf,
        /// The shape it holds.
        shape: Vec<usize>,
    },
    /// A `.safetensors` file lacks a required tensor.
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor that is missing.
        name: String,
        /// The tensors the file holds.
        found: Vec<String>,
    },
    /// A file's contents would need more memory than the budget allows.
    ResourceLimit {
        /// The file.
        path: PathBuf,
        /// What would have been allocated.
        what: &'static str,
        /// The bytes it needs.
        needed_bytes: u64,
        /// The budget ([`poly_core::memory_budget`]).
        limit_bytes: u64,
    },
    /// A data-set or generator parameter is out of its domain.
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What the parameter accepts.
        expected: &'static str,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::Format { path, reason } => write!(f, "{}: {reason}", path.display()),
            DataError::UnsupportedDType { path, dtype } => write!(
                f,
                "{}: element type {dtype} is not supported (expected float32 or float64)",
                path.display()
            ),
            DataError::BadRank { path, shape } => write!(
                f,
                "{}: shape {shape:?} has rank {}, expected [n, d], [h, n, d] or [b, h, n, d] with no empty axis",
                path.display(),
                shape.len()
            ),
            DataError::ResourceLimit {
                path,
                what,
                needed_bytes,
                limit_bytes,
            } => write!(
                f,
                "{}: {what} would need {needed_bytes} bytes, over the memory budget of \
                 {limit_bytes} bytes (raise it with --max-memory if that is intended)",
                path.display()
            ),
            DataError::MissingTensor { path, name, found } => write!(
                f,
                "{}: no tensor named {name:?} (found {found:?}); expected tensors q, k, v",
                path.display()
            ),
            DataError::InvalidParameter {
                name,
                value,
                expected,
            } => {
                write!(f, "invalid {name} = {value}: expected {expected}")
            }
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// poly-data's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
