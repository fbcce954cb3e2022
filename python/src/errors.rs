//! Rust errors as Python exceptions: budget refusals are `MemoryError`, everything else a
//! `ValueError` carrying the Rust error's message.

use pyo3::PyErr;
use pyo3::exceptions::{PyMemoryError, PyValueError};

/// The exception for an engine error.
pub fn to_py(e: poly_core::Error) -> PyErr {
    match e {
        poly_core::Error::ResourceLimit { .. } => PyMemoryError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A `ValueError` with this message.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
