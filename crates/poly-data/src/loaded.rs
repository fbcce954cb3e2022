//! A tensor as read from a file: its shape and its data in the file's element type.

use crate::error::{DataError, Result};
use poly_core::{Element, Tensor};
use std::path::Path;

/// Data in the element type the file stored.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    /// float32 elements.
    F32(Vec<f32>),
    /// float64 elements.
    F64(Vec<f64>),
}

/// A row-major (C-order) tensor read from a file.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LoadedTensor {
    /// The shape stored in the file.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: TensorData,
}

impl LoadedTensor {
    /// `"f32"` or `"f64"`: the element type stored in the file.
    pub fn dtype(&self) -> &'static str {
        match self.data {
            TensorData::F32(_) => "f32",
            TensorData::F64(_) => "f64",
        }
    }

    /// The data converted to `T` (a no-op copy when the types agree).
    pub fn to_vec<T: Element>(&self) -> Vec<T> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| T::from_f64(x as f64)).collect(),
            TensorData::F64(v) => v.iter().map(|&x| T::from_f64(x)).collect(),
        }
    }

    /// As a `[batch, heads, seq, dim]` tensor of `T`: `[n, d]` becomes `[1, 1, n, d]` and `[h, n, d]`
    /// becomes `[1, h, n, d]`.
    ///
    /// # Errors
    /// [`DataError::BadRank`] for other ranks or an empty axis (`path` names the file).
    pub fn to_bhnd<T: Element>(&self, path: &Path) -> Result<Tensor<T>> {
        let shape = match self.shape[..] {
            [n, d] => [1, 1, n, d],
            [h, n, d] => [1, h, n, d],
            [b, h, n, d] => [b, h, n, d],
            _ => {
                return Err(DataError::BadRank {
                    path: path.to_owned(),
                    shape: self.shape.clone(),
                });
            }
        };
        if shape.contains(&0) {
            return Err(DataError::BadRank {
                path: path.to_owned(),
                shape: self.shape.clone(),
            });
        }
        Tensor::from_vec(shape, self.to_vec()).map_err(|e| DataError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Reorders column-major (Fortran) data of `shape` into row-major order.
pub(crate) fn fortran_to_c<T: Copy>(data: &[T], shape: &[usize]) -> Vec<T> {
    let rank = shape.len();
    // Stride of each axis in the Fortran layout: the first axis is contiguous.
    let mut strides = vec![1usize; rank];
    for axis in 1..rank {
        strides[axis] = strides[axis - 1] * shape[axis - 1];
    }
    let mut index = vec![0usize; rank];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(data[offset]);
        // Advance the C-order multi-index (last axis fastest).
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed_into_c_order() {
        // A 2×3 matrix [[0, 1, 2], [3, 4, 5]] stored column by column.
        let fortran = [0, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&fortran, &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        // 2×2×2: element (i, j, k) stored at i + 2j + 4k.
        let fortran: Vec<usize> = (0..8).collect();
        let c = fortran_to_c(&fortran, &[2, 2, 2]);
        for i in 0..2 {
            for j in 0..2 {
                for k in 0..2 {
                    assert_eq!(c[i * 4 + j * 2 + k], i + 2 * j + 4 * k);
                }
            }
        }
    }
}
