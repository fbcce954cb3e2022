//! `attention`, `linear_attention` and the engine-only timer the overhead benchmark uses.

use crate::arrays::{Triple, output, tensor};
use crate::errors::{to_py, value_error};
use crate::maps::PyFeatureMap;
use crate::options;
use poly_core::{AttentionConfig, Element, Kernel, Sequences, TensorName, TensorRef};
use poly_sketch::{FeatureMap, LinearAttentionConfig, SketchElement};
use pyo3::prelude::*;
use std::time::Instant;

/// The exact engine's configuration from the keyword arguments.
#[allow(clippy::too_many_arguments)]
pub(crate) fn exact_config(
    kernel: &str,
    degree: Option<u32>,
    causal: bool,
    norm: &str,
    norm_bias: Option<f64>,
    scale: Option<f64>,
    layernorm: bool,
    threads: Option<usize>,
    window: Option<usize>,
) -> PyResult<AttentionConfig> {
    let kernel = match (kernel, degree) {
        ("poly", degree) => Kernel::Polynomial {
            degree: degree.unwrap_or(4),
        },
        ("softmax", None) => Kernel::Softmax,
        ("softmax", Some(_)) => {
            return Err(value_error(
                "degree applies only to kernel=\"poly\", not softmax",
            ));
        }
        (other, _) => {
            return Err(value_error(format!(
                "invalid kernel = {other:?}: expected \"poly\" or \"softmax\" (sketched kernels: \
                 linear_attention with a feature map)"
            )));
        }
    };
    let mut cfg = AttentionConfig::new(kernel)
        .with_mask(options::mask(causal))
        .with_normalization(options::normalization(norm, norm_bias)?)
        .with_layernorm(layernorm)
        .with_threads(options::threads(threads)?);
    cfg.scale = scale;
    cfg.window = window;
    cfg.validate().map_err(to_py)?;
    Ok(cfg)
}

/// `seq_lens` as validated packed sequences.
fn packed(seq_lens: Option<Vec<usize>>) -> PyResult<Option<Sequences>> {
    seq_lens
        .as_deref()
        .map(Sequences::from_lengths)
        .transpose()
        .map_err(to_py)
}

/// `seq_lens` as packed sequences, after checking that at most one layout is given.
pub(crate) fn layout_of(
    seq_lens: Option<Vec<usize>>,
    key_lens: &Option<Vec<usize>>,
) -> PyResult<Option<Sequences>> {
    if seq_lens.is_some() && key_lens.is_some() {
        return Err(value_error(
            "seq_lens (packed sequences) and key_lens (a padded batch) are two layouts: pass one",
        ));
    }
    packed(seq_lens)
}

/// An array's rank (`ndim`): outputs keep their input's.
pub(crate) fn rank(q: &Bound<'_, PyAny>) -> PyResult<usize> {
    q.getattr("ndim")?.extract()
}

fn run_exact<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    [q, k, v]: &[numpy::PyReadonlyArrayDyn<'py, T>; 3],
    cfg: &AttentionConfig,
    sequences: Option<&Sequences>,
    key_lens: Option<&[usize]>,
    rank: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (q, k, v) = views(q, k, v)?;
    let out = py
        .detach(|| match (sequences, key_lens) {
            (Some(s), _) => poly_core::attention_packed(q, k, v, cfg, s),
            (None, Some(lengths)) => poly_core::attention_padded(q, k, v, cfg, lengths),
            (None, None) => poly_core::attention(q, k, v, cfg),
        })
        .map_err(to_py)?;
    output(py, out, rank)
}

type Views<'a, T> = (TensorRef<'a, T>, TensorRef<'a, T>, TensorRef<'a, T>);

fn views<'a, T: Element + numpy::Element>(
    q: &'a numpy::PyReadonlyArrayDyn<'_, T>,
    k: &'a numpy::PyReadonlyArrayDyn<'_, T>,
    v: &'a numpy::PyReadonlyArrayDyn<'_, T>,
) -> PyResult<Views<'a, T>> {
    Ok((
        tensor(q, TensorName::Query)?,
        tensor(k, TensorName::Key)?,
        tensor(v, TensorName::Value)?,
    ))
}

/// Exact polynomial or softmax attention (see `polyattn.attention`).
#[pyfunction]
#[pyo3(signature = (q, k, v, *, kernel="poly", degree=None, causal=false, norm="sum", norm_bias=None, scale=None, layernorm=false, threads=None, window=None, seq_lens=None, key_lens=None))]
#[allow(clippy::too_many_arguments)]
pub fn attention<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
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
) -> PyResult<Bound<'py, PyAny>> {
    let sequences = layout_of(seq_lens, &key_lens)?;
    let cfg = exact_config(
        kernel, degree, causal, norm, norm_bias, scale, layernorm, threads, window,
    )?;
    let rank = rank(q)?;
    match Triple::extract(q, k, v)? {
        Triple::F32(arrays) => run_exact(
            py,
            &arrays,
            &cfg,
            sequences.as_ref(),
            key_lens.as_deref(),
            rank,
        ),
        Triple::F64(arrays) => run_exact(
            py,
            &arrays,
            &cfg,
            sequences.as_ref(),
            key_lens.as_deref(),
            rank,
        ),
    }
}

/// Times `repeat` calls of the exact engine alone on these arrays (seconds per call): the
/// baseline of the Python-overhead benchmark, measured in the same process. The other keywords
/// take `attention`'s defaults.
#[pyfunction]
#[pyo3(signature = (q, k, v, repeat, *, kernel="poly", degree=None, causal=false))]
#[allow(clippy::too_many_arguments)]
pub fn time_engine(
    py: Python<'_>,
    q: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    repeat: usize,
    kernel: &str,
    degree: Option<u32>,
    causal: bool,
) -> PyResult<Vec<f64>> {
    let cfg = exact_config(kernel, degree, causal, "sum", None, None, false, None, None)?;
    fn timed<T: Element + numpy::Element>(
        py: Python<'_>,
        [q, k, v]: &[numpy::PyReadonlyArrayDyn<'_, T>; 3],
        cfg: &AttentionConfig,
        repeat: usize,
    ) -> PyResult<Vec<f64>> {
        let (q, k, v) = views(q, k, v)?;
        py.detach(|| {
            (0..repeat)
                .map(|_| {
                    let start = Instant::now();
                    poly_core::attention(q, k, v, cfg).map(|out| {
                        let seconds = start.elapsed().as_secs_f64();
                        drop(out);
                        seconds
                    })
                })
                .collect::<poly_core::Result<Vec<f64>>>()
        })
        .map_err(to_py)
    }
    match Triple::extract(q, k, v)? {
        Triple::F32(arrays) => timed(py, &arrays, &cfg, repeat),
        Triple::F64(arrays) => timed(py, &arrays, &cfg, repeat),
    }
}

/// The linear engine's configuration from the keyword arguments.
pub(crate) fn linear_config(
    causal: bool,
    block: usize,
    local_exact: bool,
    (norm, norm_bias): (&str, Option<f64>),
    scale: Option<f64>,
    layernorm: bool,
    threads: Option<usize>,
) -> PyResult<LinearAttentionConfig> {
    let mut cfg = LinearAttentionConfig::default()
        .with_mask(options::mask(causal))
        .with_block(block)
        .with_local_exact(local_exact)
        .with_normalization(options::normalization(norm, norm_bias)?)
        .with_layernorm(layernorm)
        .with_threads(options::threads(threads)?);
    if let Some(s) = scale {
        cfg = cfg.with_scale(s);
    }
    Ok(cfg)
}

fn run_linear<'py, T: SketchElement + numpy::Element>(
    py: Python<'py>,
    [q, k, v]: &[numpy::PyReadonlyArrayDyn<'py, T>; 3],
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    sequences: Option<&Sequences>,
    rank: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (q, k, v) = views(q, k, v)?;
    let out = py
        .detach(|| match sequences {
            Some(s) => poly_sketch::linear_attention_packed(q, k, v, map, cfg, s),
            None => poly_sketch::linear_attention(q, k, v, map, cfg),
        })
        .map_err(to_py)?;
    output(py, out, rank)
}

/// Linear-time attention with a feature map (see `polyattn.linear_attention`).
#[pyfunction]
#[pyo3(signature = (q, k, v, *, feature_map, causal=false, block=256, local_exact=false, norm="sum", norm_bias=None, scale=None, layernorm=false, threads=None, seq_lens=None))]
#[allow(clippy::too_many_arguments)]
pub fn linear_attention<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    feature_map: PyRef<'py, PyFeatureMap>,
    causal: bool,
    block: usize,
    local_exact: bool,
    norm: &str,
    norm_bias: Option<f64>,
    scale: Option<f64>,
    layernorm: bool,
    threads: Option<usize>,
    seq_lens: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyAny>> {
    let sequences = packed(seq_lens)?;
    let cfg = linear_config(
        causal,
        block,
        local_exact,
        (norm, norm_bias),
        scale,
        layernorm,
        threads,
    )?;
    let rank = rank(q)?;
    match Triple::extract(q, k, v)? {
        Triple::F32(arrays) => {
            let map = feature_map.f32.as_ref();
            run_linear(py, &arrays, map, &cfg, sequences.as_ref(), rank)
        }
        Triple::F64(arrays) => {
            let map = feature_map.f64.as_ref();
            run_linear(py, &arrays, map, &cfg, sequences.as_ref(), rank)
        }
    }
}
