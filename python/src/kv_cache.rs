//! `KvCache`: exact decoding over a growing cache of keys and values, in the dtype chosen at
//! construction.

use crate::arrays::typed;
use crate::attention::exact_config;
use crate::errors::{to_py, value_error};
use numpy::{PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use poly_core::{Element, KvCache};
use pyo3::prelude::*;

enum Cache {
    F32(KvCache<f32>),
    F64(KvCache<f64>),
}

/// Keys and values of `kv_heads` heads (see `polyattn.KvCache`).
#[pyclass(module = "polyattn", name = "KvCache")]
pub struct PyKvCache {
    cache: Cache,
    kv_heads: usize,
    d: usize,
    d_v: usize,
}

/// Which head counts an array may have: exactly the cache's, or (queries) any multiple of it.
#[derive(Clone, Copy)]
enum Heads {
    Exactly(usize),
    MultipleOf(usize),
}

/// The contiguous data of `a`, checked to be `[heads, t, width]` with heads as allowed; returns
/// the data and the head count.
fn heads_rows_width<'a, T: Element + numpy::Element>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    name: &str,
    heads: Heads,
    width: usize,
) -> PyResult<(&'a [T], usize)> {
    let shape = a.shape();
    let (expected, heads_ok) = match heads {
        Heads::Exactly(h) => (format!("[{h}, t, {width}]"), shape.first() == Some(&h)),
        Heads::MultipleOf(kv) => (
            format!("[heads, t, {width}] with heads a multiple of {kv}"),
            shape
                .first()
                .is_some_and(|&h| h >= kv && h.is_multiple_of(kv)),
        ),
    };
    if shape.len() != 3 || !heads_ok || shape[2] != width {
        return Err(value_error(format!(
            "{name} must have shape {expected}; found {shape:?}"
        )));
    }
    let data = a
        .as_slice()
        .map_err(|_| value_error(format!("{name} is not C-contiguous")))?;
    Ok((data, shape[0]))
}

fn append_typed<T: Element + numpy::Element>(
    py: Python<'_>,
    cache: &mut KvCache<T>,
    (k, v): (&Bound<'_, PyAny>, &Bound<'_, PyAny>),
    (kv_heads, d, d_v): (usize, usize, usize),
) -> PyResult<()> {
    let (k, v) = (
        typed::<T>(k, "k", "the cache")?,
        typed::<T>(v, "v", "the cache")?,
    );
    let (keys, _) = heads_rows_width(&k, "k", Heads::Exactly(kv_heads), d)?;
    let (values, _) = heads_rows_width(&v, "v", Heads::Exactly(kv_heads), d_v)?;
    if k.shape()[1] != v.shape()[1] {
        return Err(value_error(format!(
            "k has {} tokens but v has {}: append the same tokens' keys and values",
            k.shape()[1],
            v.shape()[1]
        )));
    }
    py.detach(|| cache.append(keys, values)).map_err(to_py)
}

fn attend_typed<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    cache: &KvCache<T>,
    q: &Bound<'py, PyAny>,
    (kv_heads, d, d_v): (usize, usize, usize),
) -> PyResult<Bound<'py, PyAny>> {
    let q = typed::<T>(q, "q", "the cache")?;
    let (queries, heads) = heads_rows_width(&q, "q", Heads::MultipleOf(kv_heads), d)?;
    let t = q.shape()[1];
    let out = py.detach(|| cache.attend(queries, heads)).map_err(to_py)?;
    let flat = numpy::PyArray1::from_vec(py, out.into_vec());
    Ok(flat.reshape([heads, t, d_v])?.into_any())
}

#[pymethods]
impl PyKvCache {
    /// An empty cache for `kv_heads` heads of keys of dimension `d` and values of `d_v`, read with
    /// the keywords of `attention` (its mask and window align queries to the newest tokens).
    #[new]
    #[pyo3(signature = (kv_heads, d, d_v, *, kernel="poly", degree=None, causal=true, norm="sum", norm_bias=None, scale=None, layernorm=false, threads=None, window=None, dtype="float32"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        kv_heads: usize,
        d: usize,
        d_v: usize,
        kernel: &str,
        degree: Option<u32>,
        causal: bool,
        norm: &str,
        norm_bias: Option<f64>,
        scale: Option<f64>,
        layernorm: bool,
        threads: Option<usize>,
        window: Option<usize>,
        dtype: &str,
    ) -> PyResult<Self> {
        let cfg = exact_config(
            kernel, degree, causal, norm, norm_bias, scale, layernorm, threads, window,
        )?;
        let cache = match dtype {
            "float32" => Cache::F32(KvCache::new(&cfg, kv_heads, d, d_v).map_err(to_py)?),
            "float64" => Cache::F64(KvCache::new(&cfg, kv_heads, d, d_v).map_err(to_py)?),
            other => {
                return Err(value_error(format!(
                    "invalid dtype = {other:?}: expected \"float32\" or \"float64\""
                )));
            }
        };
        Ok(PyKvCache {
            cache,
            kv_heads,
            d,
            d_v,
        })
    }

    /// Appends t tokens: keys `[kv_heads, t, d]`, values `[kv_heads, t, d_v]`. They are checked
    /// here, once; an append that fails leaves the cache unchanged.
    fn append(
        &mut self,
        py: Python<'_>,
        k: &Bound<'_, PyAny>,
        v: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let dims = (self.kv_heads, self.d, self.d_v);
        match &mut self.cache {
            Cache::F32(c) => append_typed(py, c, (k, v), dims),
            Cache::F64(c) => append_typed(py, c, (k, v), dims),
        }
    }

    /// Attention of the newest t tokens' queries `[heads, t, d]` over the cache: `[heads, t, d_v]`.
    fn attend<'py>(&self, py: Python<'py>, q: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let dims = (self.kv_heads, self.d, self.d_v);
        match &self.cache {
            Cache::F32(c) => attend_typed(py, c, q, dims),
            Cache::F64(c) => attend_typed(py, c, q, dims),
        }
    }

    /// Reserves room for `tokens` more tokens (checked against the memory budget).
    fn reserve(&mut self, tokens: usize) -> PyResult<()> {
        match &mut self.cache {
            Cache::F32(c) => c.reserve(tokens),
            Cache::F64(c) => c.reserve(tokens),
        }
        .map_err(to_py)
    }

    /// Cached tokens.
    fn __len__(&self) -> usize {
        match &self.cache {
            Cache::F32(c) => c.len(),
            Cache::F64(c) => c.len(),
        }
    }

    /// `"float32"` or `"float64"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.cache {
            Cache::F32(_) => "float32",
            Cache::F64(_) => "float64",
        }
    }
}
