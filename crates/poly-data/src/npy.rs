//! `.npy` files: float32/float64, either byte order, C or Fortran order, any rank.

use crate::error::{DataError, Result};
use crate::loaded::{LoadedTensor, TensorData, fortran_to_c};
use npyz::{DType, NpyFile, Order, WriterBuilder};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

fn format_error(path: &Path, reason: impl std::fmt::Display) -> DataError {
    DataError::Format {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads a float32 or float64 `.npy` file into C order.
///
/// # Errors
/// A missing file ([`DataError::Io`]), a corrupt header or truncated data ([`DataError::Format`]),
/// or another element type ([`DataError::UnsupportedDType`]).
pub fn read_npy(path: &Path) -> Result<LoadedTensor> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    let npy = NpyFile::new(BufReader::new(file))
        .map_err(|e| format_error(path, format!("not a valid .npy file ({e})")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&n| n as usize).collect();
    let order = npy.order();
    let descr = match npy.dtype() {
        DType::Plain(ts) => ts.to_string(),
        other => format!("{other:?}"),
    };
    let truncated =
        |e: std::io::Error| format_error(path, format!("data is truncated or unreadable ({e})"));
    let data = match &descr[1..] {
        "f4" => TensorData::F32(reorder(
            npy.into_vec::<f32>().map_err(truncated)?,
            &shape,
            order,
        )),
        "f8" => TensorData::F64(reorder(
            npy.into_vec::<f64>().map_err(truncated)?,
            &shape,
            order,
        )),
        _ => {
            return Err(DataError::UnsupportedDType {
                path: path.to_owned(),
                dtype: descr,
            });
        }
    };
    Ok(LoadedTensor { shape, data })
}

fn reorder<T: Copy>(data: Vec<T>, shape: &[usize], order: Order) -> Vec<T> {
    match order {
        Order::C => data,
        Order::Fortran => fortran_to_c(&data, shape),
    }
}

/// Writes a C-order `.npy` file of `shape`.
///
/// # Errors
/// [`DataError::Io`] if the file cannot be written.
pub fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    write_npy_in_order(path, shape, data.iter().copied(), Order::C)
}

/// Writes a Fortran-order `.npy` file of `shape` from C-order data (for testing that readers
/// handle both layouts, and for users whose consumers want column-major files).
///
/// # Errors
/// [`DataError::Io`] if the file cannot be written.
pub fn write_npy_fortran<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    c_order: &[T],
) -> Result<()> {
    // The Fortran layout of a C-order array is the C layout of its reversed-axes transpose.
    let reversed: Vec<usize> = shape.iter().rev().copied().collect();
    write_npy_in_order(
        path,
        shape,
        fortran_to_c(c_order, &reversed),
        Order::Fortran,
    )
}

fn write_npy_in_order<T: npyz::AutoSerialize>(
    path: &Path,
    shape: &[usize],
    stored: impl IntoIterator<Item = T>,
    order: Order,
) -> Result<()> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .order(order)
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    writer.extend(stored).map_err(io)?;
    writer.finish().map_err(io)
}
