//! The `polyattn._polyattn` extension module: the Rust engines on numpy arrays.
//!
//! The Python package (`python/polyattn/__init__.py`) turns array-likes into C-contiguous numpy
//! arrays and calls these functions; everything here takes float32/float64 arrays, borrows them
//! without copying, and releases the GIL for the whole computation.

mod arrays;
mod attention;
mod decoding;
mod errors;
mod gradients;
mod kv_cache;
mod maps;
mod options;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _polyattn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attention::attention, m)?)?;
    m.add_function(wrap_pyfunction!(attention::linear_attention, m)?)?;
    m.add_function(wrap_pyfunction!(attention::time_engine, m)?)?;
    m.add_function(wrap_pyfunction!(gradients::attention_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gradients::linear_attention_backward, m)?)?;
    m.add_function(wrap_pyfunction!(options::set_memory_budget, m)?)?;
    m.add_function(wrap_pyfunction!(options::memory_budget, m)?)?;
    m.add_function(wrap_pyfunction!(options::warm_up, m)?)?;
    m.add_class::<maps::PyFeatureMap>()?;
    m.add_class::<decoding::PyDecodingState>()?;
    m.add_class::<kv_cache::PyKvCache>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
