//! Reading and writing some rows of a `.npy` file: the sequence-axis shards of distributed
//! attention, where no process reads or writes the whole tensor.
//!
//! The sequence axis is the second-to-last (`[.., n, d]`); a shard is a list of row ranges of it,
//! taken from every leading index (every batch entry and head). Reads seek to each range and read
//! just it; writes go to positions computed from the header, which every process computes alike,
//! so several processes can fill one file ([`create_npy_for_rows`], then [`write_npy_rows`] from
//! each, then [`finish_npy_rows`] renames it into place).

use crate::error::{DataError, Result};
use crate::loaded::{LoadedTensor, TensorData};
use crate::npy::decode;
use poly_core::Element;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How one stored element is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    F16,
    Bf16,
    F32,
    F64,
}

/// One tensor stored row-major in a file (a `.npy` file, or one tensor of a `.safetensors`
/// file), located by its header alone, for reading rows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSource {
    path: PathBuf,
    /// The stored shape.
    pub shape: Vec<usize>,
    /// Bytes per element (2, 4 or 8).
    pub width: usize,
    stored: Stored,
    little_endian: bool,
    data_offset: u64,
}

/// The largest `.safetensors` header read (the format's own limit).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

fn io(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_owned(),
        source,
    }
}

fn format(path: &Path, reason: String) -> DataError {
    DataError::Format {
        path: path.to_owned(),
        reason,
    }
}

/// Reads only the header of a `.npy` file.
///
/// # Errors
/// As [`crate::read_npy`] for the header; Fortran order (whose rows are not contiguous);
/// a rank below 2; a file whose length disagrees with its shape.
pub fn npy_info(path: &Path) -> Result<RowSource> {
    let mut file = File::open(path).map_err(io(path))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    let (header, little_endian, width) = crate::npy::read_header(&mut file, file_len, path)?;
    if header.fortran_order || header.shape.len() < 2 {
        return Err(format(
            path,
            format!(
                "reading rows needs a C-order array of rank ≥ 2 (found shape {:?}, fortran_order {})",
                header.shape, header.fortran_order
            ),
        ));
    }
    let count = poly_core::checked_product("tensor data", &header.shape)
        .map_err(|_| format(path, format!("shape {:?} overflows", header.shape)))?;
    if (count as u64).saturating_mul(width as u64) != file_len - header.data_offset {
        return Err(format(
            path,
            format!(
                "shape {:?} disagrees with the file's length (truncated or corrupt)",
                header.shape
            ),
        ));
    }
    Ok(RowSource {
        path: path.to_owned(),
        shape: header.shape,
        width,
        stored: match width {
            2 => Stored::F16,
            4 => Stored::F32,
            _ => Stored::F64,
        },
        little_endian,
        data_offset: header.data_offset,
    })
}

/// Reads only the header of a `.safetensors` file and locates the tensor `name` in it.
///
/// # Errors
/// A missing file; a header that is not valid JSON, longer than the file or than 100 MB; a missing
/// tensor (the names found are listed); a dtype other than F16, BF16, F32, F64; offsets that
/// disagree with the shape or run past the file; a rank below 2.
pub fn safetensors_info(path: &Path, name: &str) -> Result<RowSource> {
    let mut file = File::open(path).map_err(io(path))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    let bad = |reason: String| format(path, format!("not a valid .safetensors file: {reason}"));
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_SAFETENSORS_HEADER || 8 + header_len > file_len {
        return Err(bad(format!(
            "a header of {header_len} bytes in a file of {file_len}"
        )));
    }
    let mut text = vec![0u8; header_len as usize];
    file.read_exact(&mut text).map_err(io(path))?;
    let header: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("header JSON: {e}")))?;
    let Some(entry) = header.get(name) else {
        let mut found: Vec<String> = header
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "__metadata__").cloned().collect())
            .unwrap_or_default();
        found.sort();
        return Err(DataError::MissingTensor {
            path: path.to_owned(),
            name: name.to_owned(),
            found,
        });
    };
    let dtype = entry["dtype"].as_str().unwrap_or("");
    let (stored, width) = match dtype {
        "F16" => (Stored::F16, 2),
        "BF16" => (Stored::Bf16, 2),
        "F32" => (Stored::F32, 4),
        "F64" => (Stored::F64, 8),
        _ => {
            return Err(DataError::UnsupportedDType {
                path: path.to_owned(),
                dtype: dtype.to_owned(),
            });
        }
    };
    let numbers = |key: &str| -> Option<Vec<usize>> {
        entry[key]
            .as_array()?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect()
    };
    let (Some(shape), Some(offsets)) = (numbers("shape"), numbers("data_offsets")) else {
        return Err(bad(format!(
            "tensor {name:?} lacks a shape or data offsets"
        )));
    };
    let count = poly_core::checked_product("tensor data", &shape)
        .map_err(|_| bad(format!("shape {shape:?} overflows")))?;
    let fits = offsets.len() == 2
        && offsets[0] <= offsets[1]
        && (offsets[1] - offsets[0]) as u64 == count as u64 * width as u64
        && 8 + header_len + offsets[1] as u64 <= file_len;
    if !fits || shape.len() < 2 {
        return Err(bad(format!(
            "tensor {name:?}: shape {shape:?} (rank ≥ 2 needed) and offsets {offsets:?} disagree or run past the file"
        )));
    }
    Ok(RowSource {
        path: path.to_owned(),
        shape,
        width,
        stored,
        little_endian: true,
        data_offset: 8 + header_len + offsets[0] as u64,
    })
}

/// Reads the rows `segments` (in order) of the sequence axis of a C-order `.npy` file, from every
/// leading index: a tensor of the file's rank whose sequence axis has the segments' total length.
/// float16 is widened to f32, as [`crate::read_npy`] does.
///
/// # Errors
/// As [`npy_info`]; a segment beyond the sequence axis; a shard over the memory budget.
pub fn read_npy_rows(path: &Path, segments: &[Range<usize>]) -> Result<LoadedTensor> {
    npy_info(path)?.read_rows(segments)
}

impl RowSource {
    /// The file the tensor is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the rows `segments` (in order) of the sequence axis (the second-to-last) from every
    /// leading index: a tensor of the stored rank whose sequence axis has the segments' total
    /// length. Half precision is widened to f32.
    ///
    /// # Errors
    /// A segment beyond the sequence axis; a shard over the memory budget; a failed read.
    pub fn read_rows(&self, segments: &[Range<usize>]) -> Result<LoadedTensor> {
        let (info, path) = (self, self.path.as_path());
        let rank = info.shape.len();
        let (n, w) = (info.shape[rank - 2], info.shape[rank - 1]);
        if let Some(bad) = segments.iter().find(|s| s.start > s.end || s.end > n) {
            return Err(DataError::InvalidParameter {
                name: "rows",
                value: format!("{bad:?} of a sequence axis of {n} in {}", path.display()),
                expected: "row ranges inside the sequence axis",
            });
        }
        let rows: usize = segments.iter().map(|s| s.len()).sum();
        let leading: usize = info.shape[..rank - 2].iter().product();
        let count = leading * rows * w;
        poly_core::check_allocation("tensor rows", count, info.width.max(4))
            .map_err(|e| crate::npy::resource_error(path, e))?;
        let file = File::open(path).map_err(io(path))?;
        let mut raw = vec![0u8; count * info.width];
        let row_bytes = w * info.width;
        let mut at = 0;
        for lead in 0..leading {
            for s in segments {
                let len = s.len() * row_bytes;
                let offset = info.data_offset + ((lead * n + s.start) * row_bytes) as u64;
                file.read_exact_at(&mut raw[at..at + len], offset)
                    .map_err(io(path))?;
                at += len;
            }
        }
        let widen = |half| TensorData::F32(crate::half::widen(&raw, half, info.little_endian));
        let data = match info.stored {
            Stored::F16 => widen(crate::half::Half::F16),
            Stored::Bf16 => widen(crate::half::Half::Bf16),
            Stored::F32 => TensorData::F32(decode(
                &raw,
                info.little_endian,
                f32::from_le_bytes,
                f32::from_be_bytes,
            )),
            Stored::F64 => TensorData::F64(decode(
                &raw,
                info.little_endian,
                f64::from_le_bytes,
                f64::from_be_bytes,
            )),
        };
        let mut shape = info.shape.clone();
        shape[rank - 2] = rows;
        Ok(LoadedTensor { shape, data })
    }
}

/// The temporary file several processes fill before [`finish_npy_rows`] renames it to `path`.
pub fn rows_temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.rows-tmp"))
}

/// A version-1 `.npy` header for a little-endian C-order array, padded to 64 bytes.
fn header_bytes(shape: &[usize], width: usize) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut text = format!("{{'descr': '<f{width}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Creates (or truncates) the temporary file of a `.npy` of `shape` and element `T`, with its
/// header and its full length, for [`write_npy_rows`] to fill. One process calls it, before the
/// others write.
///
/// # Errors
/// [`DataError::Io`] if the file cannot be created or sized.
pub fn create_npy_for_rows<T: Element>(path: &Path, shape: &[usize]) -> Result<()> {
    let temp = rows_temporary(path);
    let header = header_bytes(shape, size_of::<T>());
    let count: usize = shape.iter().product();
    let file = File::create(&temp).map_err(io(path))?;
    file.write_all_at(&header, 0).map_err(io(path))?;
    file.set_len((header.len() + count * size_of::<T>()) as u64)
        .map_err(io(path))
}

/// Writes `data` (a tensor of `shape` except that its sequence axis holds the rows `segments`, in
/// order) into its place in the temporary file of `path`, made by [`create_npy_for_rows`] for the
/// whole `shape`.
///
/// # Errors
/// Data that does not fill the segments; [`DataError::Io`] if the file cannot be written.
pub fn write_npy_rows<T: Element>(
    path: &Path,
    shape: &[usize],
    segments: &[Range<usize>],
    data: &[T],
) -> Result<()> {
    let rank = shape.len();
    let (n, w) = (shape[rank - 2], shape[rank - 1]);
    let leading: usize = shape[..rank - 2].iter().product();
    let rows: usize = segments.iter().map(|s| s.len()).sum();
    if data.len() != leading * rows * w || segments.iter().any(|s| s.end > n) {
        return Err(DataError::InvalidParameter {
            name: "npy rows",
            value: format!(
                "{} elements for the rows {segments:?} of shape {shape:?}",
                data.len()
            ),
            expected: "the rows' elements of every leading index, in order",
        });
    }
    let width = size_of::<T>();
    let offset = header_bytes(shape, width).len() as u64;
    let file = OpenOptions::new()
        .write(true)
        .open(rows_temporary(path))
        .map_err(io(path))?;
    let mut bytes =
        Vec::with_capacity(segments.iter().map(|s| s.len()).max().unwrap_or(0) * w * width);
    let mut at = 0;
    for lead in 0..leading {
        for s in segments {
            bytes.clear();
            for x in &data[at..at + s.len() * w] {
                match width {
                    4 => bytes.extend_from_slice(&(x.to_f64() as f32).to_le_bytes()),
                    _ => bytes.extend_from_slice(&x.to_f64().to_le_bytes()),
                }
            }
            let position = offset + ((lead * n + s.start) * w * width) as u64;
            file.write_all_at(&bytes, position).map_err(io(path))?;
            at += s.len() * w;
        }
    }
    file.sync_data().map_err(io(path))
}

/// Renames the filled temporary file to `path` (one process, after every write), or removes it
/// when `keep` is false (a write failed somewhere).
///
/// # Errors
/// [`DataError::Io`] if the rename fails.
pub fn finish_npy_rows(path: &Path, keep: bool) -> Result<()> {
    let temp = rows_temporary(path);
    if keep {
        std::fs::rename(&temp, path).map_err(io(path))
    } else {
        let _ = std::fs::remove_file(&temp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_and_written_in_pieces_equal_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let (shape, n, w) = ([2usize, 3, 11, 5], 11, 5);
        let data: Vec<f64> = (0..2 * 3 * n * w).map(|i| i as f64 * 0.25 - 7.0).collect();
        let whole = dir.path().join("whole.npy");
        crate::write_npy(&whole, &shape, &data).unwrap();
        // Three "ranks": contiguous, zig-zag-like and a single row.
        let shards = [vec![0..4], vec![4..6, 9..11], vec![6..9]];
        let out = dir.path().join("pieces.npy");
        create_npy_for_rows::<f64>(&out, &shape).unwrap();
        for segments in &shards {
            let rows = read_npy_rows(&whole, segments).unwrap();
            let len: usize = segments.iter().map(|s| s.len()).sum();
            assert_eq!(rows.shape, [2, 3, len, w]);
            let values = rows.to_vec::<f64>();
            // Every row read is the one at its global position.
            let mut at = 0;
            for lead in 0..6 {
                for s in segments {
                    let expected = &data[(lead * n + s.start) * w..(lead * n + s.end) * w];
                    assert_eq!(&values[at..at + s.len() * w], expected);
                    at += s.len() * w;
                }
            }
            write_npy_rows(&out, &shape, segments, &values).unwrap();
        }
        finish_npy_rows(&out, true).unwrap();
        let back = crate::read_npy(&out).unwrap();
        assert_eq!(back.shape, shape);
        assert_eq!(back.to_vec::<f64>(), data);
        assert!(!rows_temporary(&out).exists());
        // f32 files and their header survive numpy's reader rules (our reader is strict).
        let out32 = dir.path().join("f32.npy");
        create_npy_for_rows::<f32>(&out32, &[4, 2]).unwrap();
        write_npy_rows(
            &out32,
            &[4, 2],
            &[0..4],
            &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        )
        .unwrap();
        finish_npy_rows(&out32, true).unwrap();
        assert_eq!(
            crate::read_npy(&out32).unwrap().to_vec::<f32>(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
    }

    #[test]
    fn safetensors_rows_equal_the_whole_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qkv.safetensors");
        let q: Vec<f32> = (0..2 * 7 * 3).map(|i| i as f32 - 20.0).collect();
        let k: Vec<f32> = (0..2 * 7 * 3).map(|i| 0.5 * i as f32).collect();
        crate::write_safetensors_f32(&path, &[("q", vec![2, 7, 3], &q), ("k", vec![2, 7, 3], &k)])
            .unwrap();
        let source = safetensors_info(&path, "k").unwrap();
        assert_eq!(source.shape, [2, 7, 3]);
        let rows = source.read_rows(&[5..7, 0..1]).unwrap();
        assert_eq!(rows.shape, [2, 3, 3]);
        let expected: Vec<f32> = [5, 6, 0, 12, 13, 7]
            .iter()
            .flat_map(|&r| k[r * 3..r * 3 + 3].to_vec())
            .collect();
        assert_eq!(rows.to_vec::<f32>(), expected);
        assert!(
            matches!(safetensors_info(&path, "v"), Err(DataError::MissingTensor { found, .. }) if found == ["k", "q"])
        );
        std::fs::write(&path, [200u8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
        assert!(matches!(
            safetensors_info(&path, "q"),
            Err(DataError::Format { .. })
        ));
    }

    #[test]
    fn bad_rows_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        crate::write_npy(&path, &[3, 2], &[0.0f32; 6]).unwrap();
        assert!(matches!(
            read_npy_rows(&path, &[2..4]),
            Err(DataError::InvalidParameter { .. })
        ));
        crate::write_npy_fortran(&path, &[3, 2], &[0.0f32; 6]).unwrap();
        assert!(matches!(
            read_npy_rows(&path, &[0..1]),
            Err(DataError::Format { .. })
        ));
        crate::write_npy(&path, &[6], &[0.0f32; 6]).unwrap();
        assert!(matches!(npy_info(&path), Err(DataError::Format { .. })));
    }
}
