//! `.safetensors` files holding the tensors `q`, `k`, `v`.

use crate::error::{DataError, Result};
use crate::loaded::{LoadedTensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Reads the named tensors (float32 or float64) from one `.safetensors` file.
///
/// # Errors
/// A missing or corrupt file, a missing tensor (the names found are listed), or another dtype.
///
/// # Example
/// ```
/// use poly_data::{read_safetensors, write_safetensors_f32};
/// let path = std::env::temp_dir().join(format!("poly_data_doc_{}.safetensors", std::process::id()));
/// let x = [0.5f32; 8];
/// write_safetensors_f32(&path, &[("q", vec![2, 4], &x), ("k", vec![2, 4], &x), ("v", vec![2, 4], &x)])?;
/// let [q, k, v]: [_; 3] = read_safetensors(&path, &["q", "k", "v"])?.try_into().unwrap();
/// assert_eq!((q.shape.as_slice(), k.dtype(), v.to_vec::<f32>()), (&[2, 4][..], "f32", x.to_vec()));
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), poly_data::DataError>(())
/// ```
pub fn read_safetensors(path: &Path, names: &[&str]) -> Result<Vec<LoadedTensor>> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_safetensors_bytes(&bytes, names, path)
}

/// [`read_safetensors`] of a file already in memory; `path` stands for the file in errors.
///
/// # Errors
/// As [`read_safetensors`].
pub fn read_safetensors_bytes(
    bytes: &[u8],
    names: &[&str],
    path: &Path,
) -> Result<Vec<LoadedTensor>> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| DataError::Format {
        path: path.to_owned(),
        reason: format!("not a valid .safetensors file ({e})"),
    })?;
    names
        .iter()
        .map(|&name| {
            let view = file.tensor(name).map_err(|_| {
                let mut found: Vec<String> = file.names().iter().map(|s| s.to_string()).collect();
                found.sort();
                DataError::MissingTensor {
                    path: path.to_owned(),
                    name: name.to_owned(),
                    found,
                }
            })?;
            let shape = view.shape().to_vec();
            let data = match view.dtype() {
                Dtype::F32 => TensorData::F32(
                    view.data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::F16 => TensorData::F32(crate::half::widen(
                    view.data(),
                    crate::half::Half::F16,
                    true,
                )),
                Dtype::BF16 => TensorData::F32(crate::half::widen(
                    view.data(),
                    crate::half::Half::Bf16,
                    true,
                )),
                Dtype::F64 => TensorData::F64(
                    view.data()
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                other => {
                    return Err(DataError::UnsupportedDType {
                        path: path.to_owned(),
                        dtype: format!("{other:?} (tensor {name})"),
                    });
                }
            };
            Ok(LoadedTensor { shape, data })
        })
        .collect()
}

/// Writes f32 tensors to a `.safetensors` file (little endian, as the format requires).
///
/// # Errors
/// [`DataError::Io`] or [`DataError::Format`] if serialization or writing fails.
pub fn write_safetensors_f32(path: &Path, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| DataError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let out = safetensors::serialize(views, None).map_err(|e| DataError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    crate::atomic::write_atomically(path, |mut file| std::io::Write::write_all(&mut file, &out))
}
