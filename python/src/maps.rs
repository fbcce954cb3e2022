//! Feature maps as Python objects: one random draw, held in both element types, so a map can be
//! applied to float32 and float64 inputs alike.

use crate::arrays::Array;
use crate::errors::{to_py, value_error};
use numpy::{PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use poly_core::{Element, Result};
use poly_sketch::{
    ExactDegree2, Favor, FeatureMap, PolySketch, RandomMaclaurin, SelfTensoredSketch, SketchScale,
    TensorSketch,
};
use pyo3::prelude::*;
use std::sync::Arc;

/// A feature map φ: R^d → R^m (the Python classes `PolySketch`, `SelfTensoredSketch`, … are
/// subclasses that name the family).
#[pyclass(subclass, frozen, module = "polyattn", name = "FeatureMap")]
pub struct PyFeatureMap {
    pub f32: Arc<dyn FeatureMap<f32>>,
    pub f64: Arc<dyn FeatureMap<f64>>,
    kind: String,
    sketch_dim: usize,
    seed: u64,
}

/// The parameters of one family, built in one element type.
struct Recipe<'a> {
    kind: &'a str,
    d: usize,
    degree: u32,
    size: usize,
    seed: u64,
    scale: SketchScale,
}

impl Recipe<'_> {
    fn build<T: Element>(&self) -> PyResult<Arc<dyn FeatureMap<T>>> {
        let Recipe {
            d,
            degree,
            size,
            seed,
            scale,
            ..
        } = *self;
        let built: Result<Arc<dyn FeatureMap<T>>> = match self.kind {
            "polysketch" => PolySketch::new(d, degree, size, seed, scale).map(|m| Arc::new(m) as _),
            "self-tensored" => {
                SelfTensoredSketch::new(d, degree, size, seed, scale).map(|m| Arc::new(m) as _)
            }
            "tensorsketch" => TensorSketch::new(d, degree, size, seed).map(|m| Arc::new(m) as _),
            "maclaurin" => RandomMaclaurin::new(d, degree, size, seed).map(|m| Arc::new(m) as _),
            "favor" => Favor::new(d, size, seed).map(|m| Arc::new(m) as _),
            "exact2" => ExactDegree2::new(d).map(|m| Arc::new(m) as _),
            other => {
                return Err(value_error(format!(
                    "invalid feature-map kind = {other:?}: expected polysketch, self-tensored, \
                     tensorsketch, maclaurin, favor or exact2"
                )));
            }
        };
        built.map_err(to_py)
    }
}

#[pymethods]
impl PyFeatureMap {
    /// `kind` is one of polysketch (the Gaussian tree), self-tensored, tensorsketch, maclaurin,
    /// favor, exact2; `degree` is ignored by favor (softmax) and must be 2 for exact2.
    #[new]
    #[pyo3(signature = (kind, d, degree=2, sketch_dim=32, seed=0, scale="unbiased"))]
    fn new(
        kind: &str,
        d: usize,
        degree: u32,
        sketch_dim: usize,
        seed: u64,
        scale: &str,
    ) -> PyResult<Self> {
        let scale = match scale {
            "unbiased" => SketchScale::Unbiased,
            "reference" => SketchScale::Reference,
            other => {
                return Err(value_error(format!(
                    "invalid scale = {other:?}: expected \"unbiased\" or \"reference\""
                )));
            }
        };
        if kind == "exact2" && degree != 2 {
            return Err(value_error(format!(
                "invalid degree = {degree}: expected 2: exact2 features are exactly degree 2"
            )));
        }
        let recipe = Recipe {
            kind,
            d,
            degree,
            size: sketch_dim,
            seed,
            scale,
        };
        Ok(PyFeatureMap {
            f32: recipe.build()?,
            f64: recipe.build()?,
            kind: kind.to_owned(),
            sketch_dim,
            seed,
        })
    }

    /// `d`: the length of an input row.
    #[getter]
    fn input_dim(&self) -> usize {
        self.f64.input_dim()
    }

    /// `m`: the length of a feature row.
    #[getter]
    fn feature_dim(&self) -> usize {
        self.f64.feature_dim()
    }

    /// The degree p of the polynomial kernel `(x·y)^p` estimated; `None` for favor (softmax).
    #[getter]
    fn degree(&self) -> Option<u32> {
        self.f64.polynomial_degree()
    }

    /// The family's name.
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether every weight ⟨φ(q), φ(k)⟩ is ≥ 0 by construction.
    #[getter]
    fn nonnegative_weights(&self) -> bool {
        self.f64.nonnegative_weights()
    }

    /// φ of the rows of `x` (`[..., d]`, float32 or float64, C-contiguous): `[..., m]`.
    fn map<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match Array::extract(x, "x")? {
            Array::F32(a) => apply(py, self.f32.as_ref(), &a),
            Array::F64(a) => apply(py, self.f64.as_ref(), &a),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "FeatureMap(kind={:?}, d={}, degree={}, sketch_dim={}, seed={}, feature_dim={})",
            self.kind,
            self.input_dim(),
            self.degree().map_or("None".into(), |p| p.to_string()),
            self.sketch_dim,
            self.seed,
            self.feature_dim()
        )
    }
}

fn apply<'py, T: Element + numpy::Element>(
    py: Python<'py>,
    map: &dyn FeatureMap<T>,
    x: &PyReadonlyArrayDyn<'py, T>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = x.shape().to_vec();
    let d = map.input_dim();
    if shape.last() != Some(&d) {
        return Err(value_error(format!(
            "x must have shape [..., {d}] (the map's input dimension); found {shape:?}"
        )));
    }
    let data = x
        .as_slice()
        .map_err(|_| value_error("x is not C-contiguous"))?;
    let rows = data.len() / d;
    poly_core::check_elements("feature matrix", &[rows, map.feature_dim()], size_of::<T>())
        .map_err(to_py)?;
    let features = py.detach(|| map.map_rows(data)).map_err(to_py)?;
    let mut out_shape = shape;
    *out_shape.last_mut().expect("rank ≥ 1") = map.feature_dim();
    let flat = numpy::PyArray1::from_vec(py, features);
    Ok(flat.reshape(out_shape)?.into_any())
}
