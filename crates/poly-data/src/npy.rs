//! `.npy` files: float32/float64, either byte order, C or Fortran order, any rank.

use crate::atomic::write_atomically;
use crate::error::{DataError, Result};
use crate::loaded::{LoadedTensor, TensorData, fortran_to_c};
use crate::npy_header;
use npyz::{Order, WriterBuilder};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
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
/// A missing file ([`DataError::Io`]); a corrupt, oversized or nested header, a shape whose size
/// overflows, or data shorter or longer than the shape says ([`DataError::Format`]); data over
/// the memory budget ([`DataError::ResourceLimit`]); another element type
/// ([`DataError::UnsupportedDType`]). The header is checked before anything is allocated from it.
///
/// # Example
/// ```
/// use poly_data::{read_npy, write_npy};
/// let path = std::env::temp_dir().join(format!("poly_data_doc_{}.npy", std::process::id()));
/// write_npy(&path, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let loaded = read_npy(&path)?;
/// assert_eq!(loaded.shape, [2, 3]);
/// assert_eq!(loaded.to_vec::<f64>(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// let qkv = loaded.to_bhnd::<f32>(&path)?; // as attention input: [1, 1, 2, 3]
/// assert_eq!(qkv.shape(), [1, 1, 2, 3]);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), poly_data::DataError>(())
/// ```
pub fn read_npy(path: &Path) -> Result<LoadedTensor> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    read_npy_from(file, file_len, path)
}

/// [`read_npy`] of a `.npy` file already in memory; `name` stands for the file in errors.
///
/// # Errors
/// As [`read_npy`].
pub fn read_npy_bytes(bytes: &[u8], name: &Path) -> Result<LoadedTensor> {
    read_npy_from(std::io::Cursor::new(bytes), bytes.len() as u64, name)
}

/// The reader behind both: `file_len` bytes of `.npy` from `file`.
fn read_npy_from(mut file: impl Read + Seek, file_len: u64, path: &Path) -> Result<LoadedTensor> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let (header, little_endian, width) = read_header(&mut file, file_len, path)?;
    let count = poly_core::checked_product("tensor data", &header.shape).map_err(|_| {
        format_error(
            path,
            format!(
                "shape {:?} has more elements than fit in memory",
                header.shape
            ),
        )
    })?;
    let bytes = (count as u64).saturating_mul(width as u64);
    let available = file_len - header.data_offset;
    if bytes != available {
        return Err(format_error(
            path,
            format!(
                "shape {:?} needs {bytes} bytes of data, the file holds {available} (truncated or corrupt)",
                header.shape
            ),
        ));
    }
    // Half precision is widened to f32: four bytes per element in memory.
    poly_core::check_allocation("tensor data", count, width.max(4))
        .map_err(|e| resource_error(path, e))?;
    let mut raw = vec![0u8; bytes as usize];
    file.seek(SeekFrom::Start(header.data_offset)).map_err(io)?;
    file.read_exact(&mut raw).map_err(io)?;
    let order = if header.fortran_order {
        Order::Fortran
    } else {
        Order::C
    };
    let data = if width == 2 {
        // float16 is widened to f32, the precision the engines compute in.
        let values = crate::half::widen(&raw, crate::half::Half::F16, little_endian);
        TensorData::F32(reorder(values, &header.shape, order))
    } else if width == 4 {
        let values = decode(&raw, little_endian, f32::from_le_bytes, f32::from_be_bytes);
        TensorData::F32(reorder(values, &header.shape, order))
    } else {
        let values = decode(&raw, little_endian, f64::from_le_bytes, f64::from_be_bytes);
        TensorData::F64(reorder(values, &header.shape, order))
    };
    Ok(LoadedTensor {
        shape: header.shape,
        data,
    })
}

/// The header of a `.npy` file of `file_len` bytes (read from its start), with its byte order and
/// element width.
///
/// # Errors
/// As [`read_npy`] for the header: a bad magic or version, an oversized, truncated or malformed
/// header, an element type other than float16/32/64.
pub(crate) fn read_header(
    file: &mut (impl Read + Seek),
    file_len: u64,
    path: &Path,
) -> Result<(npy_header::Header, bool, usize)> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let mut first = [0u8; 12];
    let got = read_up_to(file, &mut first).map_err(io)?;
    let (prefix, header_len) =
        npy_header::prefix(&first[..got], file_len).map_err(|r| invalid_npy(path, r))?;
    let mut text = vec![0u8; header_len as usize]; // ≤ MAX_HEADER_BYTES, checked above
    file.seek(SeekFrom::Start(prefix)).map_err(io)?;
    file.read_exact(&mut text).map_err(io)?;
    let header = npy_header::parse(&text, prefix).map_err(|r| invalid_npy(path, r))?;
    let (little_endian, width) = match header.descr.as_bytes() {
        [b'<' | b'=', b'f', w @ (b'2' | b'4' | b'8')] => (true, (w - b'0') as usize),
        [b'>', b'f', w @ (b'2' | b'4' | b'8')] => (false, (w - b'0') as usize),
        _ => {
            return Err(DataError::UnsupportedDType {
                path: path.to_owned(),
                dtype: header.descr,
            });
        }
    };
    Ok((header, little_endian, width))
}

/// Decodes `N`-byte elements in either byte order.
pub(crate) fn decode<const N: usize, T>(
    raw: &[u8],
    little_endian: bool,
    le: fn([u8; N]) -> T,
    be: fn([u8; N]) -> T,
) -> Vec<T> {
    let from = if little_endian { le } else { be };
    raw.chunks_exact(N)
        .map(|b| from(b.try_into().expect("chunks of N bytes")))
        .collect()
}

fn invalid_npy(path: &Path, reason: String) -> DataError {
    format_error(path, format!("not a valid .npy file: {reason}"))
}

/// Reads as many bytes as the file has, up to `buf.len()`.
fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub(crate) fn resource_error(path: &Path, e: poly_core::Error) -> DataError {
    match e {
        poly_core::Error::ResourceLimit {
            what,
            needed_bytes,
            limit_bytes,
        } => DataError::ResourceLimit {
            path: path.to_owned(),
            what,
            needed_bytes,
            limit_bytes,
        },
        other => format_error(path, other),
    }
}

fn reorder<T: Copy>(data: Vec<T>, shape: &[usize], order: Order) -> Vec<T> {
    match order {
        Order::C => data,
        Order::Fortran => fortran_to_c(&data, shape),
    }
}

/// Writes a C-order `.npy` file of `shape`, atomically: a failed write leaves no file behind and
/// an existing file untouched.
///
/// # Errors
/// [`DataError::InvalidParameter`] if `data` does not hold `product(shape)` elements (checked
/// before any file is created); [`DataError::Io`] if the file cannot be written.
pub fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    data: &[T],
) -> Result<()> {
    check_shape(shape, data.len())?;
    write_npy_in_order(path, shape, data.iter().copied(), Order::C)
}

/// The data must fill the shape exactly.
fn check_shape(shape: &[usize], len: usize) -> Result<()> {
    if poly_core::checked_product("npy data", shape).ok() != Some(len) {
        return Err(DataError::InvalidParameter {
            name: "npy data",
            value: format!("{len} elements for shape {shape:?}"),
            expected: "exactly product(shape) elements",
        });
    }
    Ok(())
}

/// Writes a Fortran-order `.npy` file of `shape` from C-order data (for testing that readers
/// handle both layouts, and for users whose consumers want column-major files).
///
/// # Errors
/// As [`write_npy`].
pub fn write_npy_fortran<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    c_order: &[T],
) -> Result<()> {
    check_shape(shape, c_order.len())?;
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
    let shape: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
    write_atomically(path, |file| {
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .order(order)
            .shape(&shape)
            .writer(BufWriter::new(file))
            .begin_nd()?;
        writer.extend(stored)?;
        writer.finish()
    })
}
