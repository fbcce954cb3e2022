//! `DecodingState`: token-by-token sketched decoding, in the dtype chosen at construction.

use crate::arrays::typed;
use crate::errors::{to_py, value_error};
use crate::maps::PyFeatureMap;
use crate::options;
use numpy::{PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use poly_core::Element;
use poly_sketch::{DecodingState, LinearAttentionConfig};
use pyo3::prelude::*;

enum State {
    F32(DecodingState<'static, f32>),
    F64(DecodingState<'static, f64>),
}

/// The running state of one head (see `polyattn.DecodingState`).
#[pyclass(module = "polyattn", name = "DecodingState")]
pub struct PyDecodingState {
    state: State,
    d: usize,
    d_v: usize,
}

/// The contiguous data of an array of the state's dtype, with its row count, checked against
/// the row length `width` (`[rows, width]`, or `[width]` for one row).
fn rows<'a, T: Element + numpy::Element>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    width: usize,
    name: &str,
) -> PyResult<&'a [T]> {
    let shape = a.shape();
    let ok = match *shape {
        [w] => w == width,
        [_, w] => w == width,
        _ => false,
    };
    if !ok {
        return Err(value_error(format!(
            "{name} must have shape [rows, {width}] or [{width}]; found {shape:?}"
        )));
    }
    a.as_slice()
        .map_err(|_| value_error(format!("{name} is not C-contiguous")))
}

fn prefill_typed<T: Element + numpy::Element>(
    py: Python<'_>,
    s: &mut DecodingState<'static, T>,
    (k, v): (&Bound<'_, PyAny>, &Bound<'_, PyAny>),
    (d, d_v): (usize, usize),
) -> PyResult<()> {
    let (k, v) = (
        typed::<T>(k, "k", "the state")?,
        typed::<T>(v, "v", "the state")?,
    );
    let (k, v) = (rows(&k, d, "k")?, rows(&v, d_v, "v")?);
    py.detach(|| s.prefill(k, v)).map_err(to_py)
}

fn step_typed<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    s: &mut DecodingState<'static, T>,
    (q, k, v): (&Bound<'py, PyAny>, &Bound<'py, PyAny>, &Bound<'py, PyAny>),
    (d, d_v): (usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    let (q, k, v) = (
        typed::<T>(q, "q", "the state")?,
        typed::<T>(k, "k", "the state")?,
        typed::<T>(v, "v", "the state")?,
    );
    let grouped = q.ndim() == 2;
    let (q, k, v) = (rows(&q, d, "q")?, rows(&k, d, "k")?, rows(&v, d_v, "v")?);
    let g = q.len() / d;
    let out = numpy::PyArray1::from_vec(py, s.step(q, k, v).map_err(to_py)?);
    // One query row in, one output row out; a group `[g, d]` in, `[g, d_v]` out.
    Ok(if grouped {
        out.reshape([g, d_v])?.into_any()
    } else {
        out.into_any()
    })
}

#[pymethods]
impl PyDecodingState {
    /// An empty state for values of dimension `d_v`, decoding with `feature_map`.
    #[new]
    #[pyo3(signature = (feature_map, d_v, *, norm="sum", norm_bias=None, scale=None, layernorm=false, local_exact=false, block=256, dtype="float32"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        feature_map: PyRef<'_, PyFeatureMap>,
        d_v: usize,
        norm: &str,
        norm_bias: Option<f64>,
        scale: Option<f64>,
        layernorm: bool,
        local_exact: bool,
        block: usize,
        dtype: &str,
    ) -> PyResult<Self> {
        let mut cfg = LinearAttentionConfig::default()
            .with_normalization(options::normalization(norm, norm_bias)?)
            .with_layernorm(layernorm)
            .with_local_exact(local_exact)
            .with_block(block);
        if let Some(s) = scale {
            cfg = cfg.with_scale(s);
        }
        let state = match dtype {
            "float32" => State::F32(
                DecodingState::new_shared(feature_map.f32.clone(), d_v, &cfg).map_err(to_py)?,
            ),
            "float64" => State::F64(
                DecodingState::new_shared(feature_map.f64.clone(), d_v, &cfg).map_err(to_py)?,
            ),
            other => {
                return Err(value_error(format!(
                    "invalid dtype = {other:?}: expected \"float32\" or \"float64\""
                )));
            }
        };
        Ok(PyDecodingState {
            state,
            d: feature_map.f64.input_dim(),
            d_v,
        })
    }

    /// Absorbs a prompt's keys `[rows, d]` and values `[rows, d_v]`.
    fn prefill(
        &mut self,
        py: Python<'_>,
        k: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let dims = (self.d, self.d_v);
        match &mut self.state {
            State::F32(s) => prefill_typed(py, s, (k, v), dims),
            State::F64(s) => prefill_typed(py, s, (k, v), dims),
        }
    }

    /// Absorbs one token's `k` (`[d]`) and `v` (`[d_v]`) and returns the output (`[d_v]`) for
    /// its query `q` (`[d]`), or for the queries `[g, d]` of the g query heads that share this
    /// k/v head (`[g, d_v]`). A step that fails leaves the state as it was.
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        k: &Bound<'py, PyAny>,
        v: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dims = (self.d, self.d_v);
        match &mut self.state {
            State::F32(s) => step_typed(py, s, (q, k, v), dims),
            State::F64(s) => step_typed(py, s, (q, k, v), dims),
        }
    }

    /// Forgets every absorbed token: the next sequence starts here.
    fn reset(&mut self) {
        match &mut self.state {
            State::F32(s) => s.reset(),
            State::F64(s) => s.reset(),
        }
    }

    /// Tokens absorbed so far.
    fn __len__(&self) -> usize {
        match &self.state {
            State::F32(s) => s.len(),
            State::F64(s) => s.len(),
        }
    }

    /// `"float32"` or `"float64"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.state {
            State::F32(_) => "float32",
            State::F64(_) => "float64",
        }
    }

    /// The feature dimension m of the state.
    #[getter]
    fn feature_dim(&self) -> usize {
        match &self.state {
            State::F32(s) => s.feature_dim(),
            State::F64(s) => s.feature_dim(),
        }
    }
}
