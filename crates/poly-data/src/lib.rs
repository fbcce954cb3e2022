//! # poly-data: tensors in and out of files
//!
//! Reads attention inputs from `.npy` (float16/float32/float64, C or Fortran order) and
//! `.safetensors` (F16, BF16, F32, F64) files (half precision widened to f32: [`half`]), converts them to poly-core's `[batch, heads, seq, dim]` tensors, and writes results as
//! `.npy`. Every failure names the file and what is wrong with it. [`synthetic`] makes seeded
//! test inputs; [`datasets`] generates the two dataset constructions of the Song–Xu–Yin
//! experiment (the experiment itself, network to report, is the poly-reproduce crate).

mod atomic;
pub mod datasets;
mod error;
pub mod half;
mod loaded;
mod npy;
mod npy_header;
mod rows;
mod safetensors_io;
pub mod synthetic;

pub use error::{DataError, Result};
pub use loaded::{LoadedTensor, TensorData};
pub use npy::{read_npy, read_npy_bytes, write_npy, write_npy_fortran};
pub use rows::{
    RowSource, create_npy_for_rows, finish_npy_rows, npy_info, read_npy_rows, rows_temporary,
    safetensors_info, write_npy_rows,
};
pub use safetensors_io::{read_safetensors, read_safetensors_bytes, write_safetensors_f32};
