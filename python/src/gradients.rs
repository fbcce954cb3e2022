//! `attention_backward`: the gradients of exact attention on numpy arrays.

use crate::arrays::{Triple, output, tensor, typed};
use crate::attention::exact_config;
use crate::errors::to_py;
use numpy::PyReadonlyArrayDyn;
use poly_core::{AttentionConfig, Element, TensorName};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

fn rank(x: &Bound<'_, PyAny>) -> PyResult<usize> {
    x.getattr("ndim")?.extract()
}

fn run<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    [q, k, v]: &[PyReadonlyArrayDyn<'py, T>; 3],
    grad_out: &Bound<'py, PyAny>,
    cfg: &AttentionConfig,
    ranks: [usize; 3],
) -> PyResult<Bound<'py, PyTuple>> {
    let g = typed::<T>(grad_out, "grad_out", "q")?;
    let (qt, kt, vt) = (
        tensor(q, TensorName::Query)?,
        tensor(k, TensorName::Key)?,
        tensor(v, TensorName::Value)?,
    );
    let gt = tensor(&g, TensorName::Output)?;
    let (_, grads) = py
        .detach(|| poly_core::attention_gradients(qt, kt, vt, gt, cfg))
        .map_err(to_py)?;
    PyTuple::new(
        py,
        [
            output(py, grads.dq, ranks[0])?,
            output(py, grads.dk, ranks[1])?,
            output(py, grads.dv, ranks[2])?,
        ],
    )
}

/// The gradients of exact attention (see `polyattn.attention_backward`).
#[pyfunction]
#[pyo3(signature = (q, k, v, grad_out, *, kernel="poly", degree=None, causal=false, norm="sum", norm_bias=None, scale=None, layernorm=false, threads=None, window=None))]
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    kernel: &str,
    degree: Option<u32>,
    causal: bool,
    norm: &str,
    norm_bias: Option<f64>,
    scale: Option<f64>,
    layernorm: bool,
    threads: Option<usize>,
    window: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let cfg = exact_config(
        kernel, degree, causal, norm, norm_bias, scale, layernorm, threads, window,
    )?;
    let ranks = [rank(q)?, rank(k)?, rank(v)?];
    match Triple::extract(q, k, v)? {
        Triple::F32(arrays) => run(py, &arrays, grad_out, &cfg, ranks),
        Triple::F64(arrays) => run(py, &arrays, grad_out, &cfg, ranks),
    }
}
