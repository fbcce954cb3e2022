//! numpy arrays in and out: dtype dispatch, the CLI's shape rules, zero-copy borrowing.

use crate::errors::{to_py, value_error};
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use poly_core::{Element, Shape, Tensor, TensorName, TensorRef};
use pyo3::prelude::*;

/// One input array, borrowed read-only in its own element type.
pub enum Array<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl<'py> Array<'py> {
    /// `x` as a float32 or float64 array; anything else is a `ValueError` naming `name`.
    pub fn extract(x: &Bound<'py, PyAny>, name: &str) -> PyResult<Self> {
        if let Ok(a) = x.cast::<PyArrayDyn<f32>>() {
            return Ok(Array::F32(
                a.try_readonly().map_err(|e| borrow_error(name, e))?,
            ));
        }
        if let Ok(a) = x.cast::<PyArrayDyn<f64>>() {
            return Ok(Array::F64(
                a.try_readonly().map_err(|e| borrow_error(name, e))?,
            ));
        }
        let found = x
            .getattr("dtype")
            .and_then(|d| d.str())
            .map_or_else(|_| x.get_type().to_string(), |s| s.to_string());
        Err(value_error(format!(
            "{name} must be a float32 or float64 array; found {found}"
        )))
    }

    /// `"float32"` or `"float64"`.
    pub fn dtype(&self) -> &'static str {
        match self {
            Array::F32(_) => "float32",
            Array::F64(_) => "float64",
        }
    }
}

fn borrow_error(name: &str, e: impl std::fmt::Display) -> PyErr {
    value_error(format!("{name} cannot be borrowed: {e}"))
}

/// The three inputs of one call, in one element type.
pub enum Triple<'py> {
    F32([PyReadonlyArrayDyn<'py, f32>; 3]),
    F64([PyReadonlyArrayDyn<'py, f64>; 3]),
}

impl<'py> Triple<'py> {
    /// q, k, v of one dtype (a `ValueError` names the one that differs from q).
    pub fn extract(
        q: &Bound<'py, PyAny>,
        k: &Bound<'py, PyAny>,
        v: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        let (q, k, v) = (
            Array::extract(q, "q")?,
            Array::extract(k, "k")?,
            Array::extract(v, "v")?,
        );
        let mismatch = |name: &str, other: &Array<'_>, q: &Array<'_>| {
            value_error(format!(
                "{name} is {} but q is {}: pass q, k and v in one dtype",
                other.dtype(),
                q.dtype()
            ))
        };
        match (q, k, v) {
            (Array::F32(q), Array::F32(k), Array::F32(v)) => Ok(Triple::F32([q, k, v])),
            (Array::F64(q), Array::F64(k), Array::F64(v)) => Ok(Triple::F64([q, k, v])),
            (q, k, v) => {
                if k.dtype() != q.dtype() {
                    Err(mismatch("k", &k, &q))
                } else {
                    Err(mismatch("v", &v, &q))
                }
            }
        }
    }
}

/// `[n, d]` → `[1, 1, n, d]`, `[h, n, d]` → `[1, h, n, d]`, `[b, h, n, d]` as is: the shape rules
/// of the command line.
pub fn lift(shape: &[usize], name: &str) -> PyResult<Shape> {
    match *shape {
        [n, d] => Ok([1, 1, n, d]),
        [h, n, d] => Ok([1, h, n, d]),
        [b, h, n, d] => Ok([b, h, n, d]),
        _ => Err(value_error(format!(
            "{name} must have rank 2, 3 or 4 ([n, d], [h, n, d] or [b, h, n, d]); found rank {} \
             (shape {shape:?})",
            shape.len()
        ))),
    }
}

/// A borrowed array as an engine tensor, without copying (the package passes C-contiguous
/// arrays; anything else is refused rather than copied here).
pub fn tensor<'a, T: Element + numpy::Element>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    name: TensorName,
) -> PyResult<TensorRef<'a, T>> {
    let label = name.to_string();
    let shape = lift(a.shape(), &label)?;
    let data = a
        .as_slice()
        .map_err(|_| value_error(format!("{label} is not C-contiguous")))?;
    TensorRef::new(name, shape, data).map_err(to_py)
}

/// An engine result as a numpy array of `rank` dimensions (the caller's rank: leading axes of
/// size 1 are dropped back), handing the buffer over without copying.
pub fn output<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    t: Tensor<T>,
    rank: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = t.shape();
    let dims: Vec<usize> = shape[4 - rank.clamp(2, 4)..].to_vec();
    let flat = numpy::PyArray1::from_vec(py, t.into_vec());
    Ok(flat.reshape(dims)?.into_any())
}

/// `x` as an array of the element type `T` that `owner` (a state or cache, built for one dtype)
/// holds (a `ValueError` otherwise).
pub fn typed<'py, T: Element + numpy::Element>(
    x: &Bound<'py, PyAny>,
    name: &str,
    owner: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let a = Array::extract(x, name)?;
    let found = a.dtype();
    x.cast::<numpy::PyArrayDyn<T>>()
        .map_err(|_| {
            value_error(format!(
                "{name} is {found} but {owner} is {}: pass arrays of its dtype",
                if size_of::<T>() == 4 {
                    "float32"
                } else {
                    "float64"
                }
            ))
        })?
        .try_readonly()
        .map_err(|e| value_error(format!("{name} cannot be borrowed: {e}")))
}
