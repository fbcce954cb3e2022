//! The keyword arguments shared by the functions, parsed once, with the CLI's names and rules, and
//! the process-wide settings (memory budget, warm-up).

use crate::errors::{to_py, value_error};
use poly_core::{Mask, Normalization, Threads};
use pyo3::prelude::*;
use std::num::NonZeroUsize;

/// `causal` as a mask.
pub fn mask(causal: bool) -> Mask {
    if causal { Mask::Causal } else { Mask::None }
}

/// `norm` (`"sum"`, `"one-plus-sum"`, `"none"`) and `norm_bias`, which only `one-plus-sum`
/// takes (as `--norm-bias` on the command line).
pub fn normalization(norm: &str, norm_bias: Option<f64>) -> PyResult<Normalization> {
    let normalization = match norm {
        "sum" => Normalization::Sum,
        "one-plus-sum" => Normalization::OnePlusSum(norm_bias.unwrap_or(1.0)),
        "none" => Normalization::None,
        other => {
            return Err(value_error(format!(
                "invalid norm = {other:?}: expected \"sum\", \"one-plus-sum\" or \"none\""
            )));
        }
    };
    if norm_bias.is_some() && !matches!(normalization, Normalization::OnePlusSum(_)) {
        return Err(value_error(format!(
            "norm_bias applies only to norm=\"one-plus-sum\", not norm={norm:?}"
        )));
    }
    Ok(normalization)
}

/// `threads=None` is the global pool; a count is checked against the machine's cap before any
/// thread is spawned.
pub fn threads(threads: Option<usize>) -> PyResult<Threads> {
    match threads {
        None => Ok(Threads::Global),
        Some(n) => {
            poly_core::check_threads(n).map_err(to_py)?;
            NonZeroUsize::new(n).map(Threads::Exact).ok_or_else(|| {
                value_error("invalid threads = 0: expected a thread count ≥ 1 or None")
            })
        }
    }
}

/// Sets the largest single buffer a call may allocate from input sizes (bytes; `None`: the
/// default), as the CLI's `--max-memory` does; larger requests raise `MemoryError` before
/// anything is allocated.
#[pyfunction]
#[pyo3(signature = (bytes))]
pub fn set_memory_budget(bytes: Option<u64>) -> PyResult<()> {
    poly_core::set_memory_budget(bytes).map_err(to_py)
}

/// The current memory budget in bytes (default: half of the memory this process may use).
#[pyfunction]
pub fn memory_budget() -> u64 {
    poly_core::memory_budget()
}

/// Starts the pool of `threads` (`None`: the global pool) and pays on each of its workers what a
/// process's first attention call would otherwise pay: faer's one-time set-up (it reads the cache
/// sizes), GEMMs of the engine's tile shapes and the worker's score tile. For a server or a model
/// to call once at start-up, so that its first request runs at the steady-state speed; results
/// never depend on it. Raises `ValueError` for a thread count of 0 or beyond the machine's cap.
#[pyfunction]
#[pyo3(signature = (*, threads=None))]
pub fn warm_up(py: Python<'_>, threads: Option<usize>) -> PyResult<()> {
    let pool = self::threads(threads)?;
    py.detach(|| poly_core::warm_up(pool)).map_err(to_py)
}
