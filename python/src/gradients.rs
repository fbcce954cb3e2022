//! `attention_backward` and `linear_attention_backward`: gradients on numpy arrays.

use crate::arrays::{Triple, output, tensor, typed};
use crate::attention::{exact_config, layout_of, linear_config, rank};
use crate::errors::to_py;
use crate::maps::PyFeatureMap;
use numpy::PyReadonlyArrayDyn;
use poly_core::{AttentionConfig, AttentionGradients, Element, Layout, TensorName};
use poly_sketch::{FeatureMap, LinearAttentionConfig, SketchElement};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// What a backward runs: the exact engine (with its layout) or the linear one with its map.
enum Engine<'a, T: Element> {
    Exact(&'a AttentionConfig, Layout<'a>),
    Linear(&'a dyn FeatureMap<T>, &'a LinearAttentionConfig),
}

/// The exact forward then backward in one layout.
fn exact_gradients<T: Element>(
    [q, k, v, g]: [poly_core::TensorRef<'_, T>; 4],
    cfg: &AttentionConfig,
    layout: Layout<'_>,
) -> poly_core::Result<(poly_core::Tensor<T>, AttentionGradients<T>)> {
    let forward = match layout {
        Layout::Packed(s) => poly_core::attention_forward_packed(q, k, v, cfg, s)?,
        Layout::KeyPadded(l) => poly_core::attention_forward_padded(q, k, v, cfg, l)?,
        _ => poly_core::attention_forward(q, k, v, cfg)?,
    };
    let grads = poly_core::attention_backward(q, k, v, &forward, g)?;
    Ok((forward.into_output(), grads))
}

fn run<'py, T: SketchElement + numpy::Element>(
    py: Python<'py>,
    [q, k, v]: &[PyReadonlyArrayDyn<'py, T>; 3],
    grad_out: &Bound<'py, PyAny>,
    engine: Engine<'_, T>,
    ranks: [usize; 3],
) -> PyResult<Bound<'py, PyTuple>> {
    let g = typed::<T>(grad_out, "grad_out", "q")?;
    let (qt, kt, vt) = (
        tensor(q, TensorName::Query)?,
        tensor(k, TensorName::Key)?,
        tensor(v, TensorName::Value)?,
    );
    let gt = tensor(&g, TensorName::Output)?;
    let grads: AttentionGradients<T> = py
        .detach(|| match engine {
            Engine::Exact(cfg, layout) => exact_gradients([qt, kt, vt, gt], cfg, layout),
            Engine::Linear(map, cfg) => {
                poly_sketch::linear_attention_backward(qt, kt, vt, gt, map, cfg)
            }
        })
        .map_err(to_py)?
        .1;
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
#[pyo3(signature = (q, k, v, grad_out, *, kernel="poly", degree=None, causal=false, norm="sum", norm_bias=None, scale=None, layernorm=false, threads=None, window=None, seq_lens=None, key_lens=None))]
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
    seq_lens: Option<Vec<usize>>,
    key_lens: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let cfg = exact_config(
        kernel, degree, causal, norm, norm_bias, scale, layernorm, threads, window,
    )?;
    let sequences = layout_of(seq_lens, &key_lens)?;
    let layout = match (&sequences, &key_lens) {
        (Some(s), _) => Layout::Packed(s),
        (None, Some(l)) => Layout::KeyPadded(l),
        (None, None) => Layout::Dense,
    };
    let ranks = [rank(q)?, rank(k)?, rank(v)?];
    match Triple::extract(q, k, v)? {
        Triple::F32(arrays) => run(py, &arrays, grad_out, Engine::Exact(&cfg, layout), ranks),
        Triple::F64(arrays) => run(py, &arrays, grad_out, Engine::Exact(&cfg, layout), ranks),
    }
}

/// The gradients of linear attention (see `polyattn.linear_attention_backward`).
#[pyfunction]
#[pyo3(signature = (q, k, v, grad_out, *, feature_map, causal=false, block=256, local_exact=false, norm="sum", norm_bias=None, scale=None, layernorm=false, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn linear_attention_backward<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    feature_map: PyRef<'py, PyFeatureMap>,
    causal: bool,
    block: usize,
    local_exact: bool,
    norm: &str,
    norm_bias: Option<f64>,
    scale: Option<f64>,
    layernorm: bool,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let cfg = linear_config(
        causal,
        block,
        local_exact,
        (norm, norm_bias),
        scale,
        layernorm,
        threads,
    )?;
    let ranks = [rank(q)?, rank(k)?, rank(v)?];
    match Triple::extract(q, k, v)? {
        Triple::F32(arrays) => {
            let engine = Engine::Linear(feature_map.f32.as_ref(), &cfg);
            run(py, &arrays, grad_out, engine, ranks)
        }
        Triple::F64(arrays) => {
            let engine = Engine::Linear(feature_map.f64.as_ref(), &cfg);
            run(py, &arrays, grad_out, engine, ranks)
        }
    }
}
