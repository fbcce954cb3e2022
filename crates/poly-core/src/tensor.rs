//! Row-major `[batch, heads, seq, dim]` tensors: an owned [`Tensor`] and a borrowed [`TensorRef`].
//!
//! The layout is NumPy/PyTorch's C order, so buffers from `.npy` files or other frameworks wrap
//! without copying. faer matrices are only created as views around single GEMM calls.

use crate::error::{AXIS_NAMES, Error, Result, TensorName};

/// Shape `[batch, heads, seq, dim]`.
pub type Shape = [usize; 4];

/// Number of elements of a shape, or `None` on overflow.
pub fn element_count(shape: Shape) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n))
}

fn check_len(tensor: TensorName, shape: Shape, len: usize) -> Result<()> {
    let expected = element_count(shape).ok_or(Error::InvalidParameter {
        name: "shape",
        value: format!("{shape:?}"),
        expected: "an element count that fits in usize",
    })?;
    if expected != len {
        return Err(Error::BufferLength {
            tensor,
            expected,
            found: len,
        });
    }
    Ok(())
}

/// An owned row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Shape,
    data: Vec<T>,
}

/// A borrowed row-major tensor.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a, T> {
    shape: Shape,
    data: &'a [T],
}

impl<T: Copy + Default> Tensor<T> {
    /// A tensor of `T::default()` (zero for floats).
    ///
    /// # Errors
    /// [`Error::ResourceLimit`] if the element count overflows `usize` or the tensor exceeds the
    /// memory budget ([`crate::memory_budget`]).
    pub fn zeros(shape: Shape) -> Result<Self> {
        let len = crate::resources::check_elements("tensor", &shape, size_of::<T>())?;
        Ok(Tensor {
            shape,
            data: crate::pages::zeroed(len),
        })
    }
}

impl<T> Tensor<T> {
    /// Wraps a row-major buffer.
    ///
    /// # Errors
    /// [`Error::BufferLength`] if `data.len()` is not the product of `shape`.
    pub fn from_vec(shape: Shape, data: Vec<T>) -> Result<Self> {
        check_len(TensorName::Output, shape, data.len())?;
        Ok(Tensor { shape, data })
    }

    /// The `[batch, heads, seq, dim]` shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
    /// The elements in row-major order, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }
    /// The buffer, row-major.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }
    /// A borrowed view, what the engines take.
    pub fn view(&self) -> TensorRef<'_, T> {
        TensorRef {
            shape: self.shape,
            data: &self.data,
        }
    }
    /// Converts every element, e.g. `f32` → `f64` for comparisons with the reference.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Tensor<U> {
        Tensor {
            shape: self.shape,
            data: self.data.iter().map(f).collect(),
        }
    }
}

impl<'a, T> TensorRef<'a, T> {
    /// Wraps a row-major slice; `name` is used in the error if the length is wrong.
    ///
    /// # Errors
    /// [`Error::BufferLength`] if `data.len()` is not the product of `shape`.
    pub fn new(name: TensorName, shape: Shape, data: &'a [T]) -> Result<Self> {
        check_len(name, shape, data.len())?;
        Ok(TensorRef { shape, data })
    }

    /// The `[batch, heads, seq, dim]` shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// The elements in row-major order.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }
    /// Rows of one (batch, head) pair as a `[seq, dim]` row-major slice.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `batch` or `head` is out of range.
    pub fn head(&self, batch: usize, head: usize) -> Result<&'a [T]> {
        let [batches, heads, seq, dim] = self.shape;
        if batch >= batches || head >= heads {
            return Err(Error::InvalidParameter {
                name: "head index",
                value: format!("(batch {batch}, head {head})"),
                expected: "batch < shape[0] and head < shape[1]",
            });
        }
        let len = seq * dim;
        let start = (batch * heads + head) * len;
        Ok(&self.data[start..start + len])
    }
    /// Rows `rows` of the sequence axis of every head, copied into a tensor of their own
    /// (`[batch, heads, rows.len(), dim]`): one sequence of a packed batch, say.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `rows` is not within the sequence axis.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Result<Tensor<T>>
    where
        T: Copy,
    {
        let [b, h, n, d] = self.shape;
        if rows.start > rows.end || rows.end > n {
            return Err(Error::InvalidParameter {
                name: "row range",
                value: format!("{rows:?}"),
                expected: "start ≤ end ≤ the sequence length",
            });
        }
        let mut data = Vec::with_capacity(b * h * rows.len() * d);
        for head in self.data.chunks_exact((n * d).max(1)) {
            data.extend_from_slice(&head[rows.start * d..rows.end * d]);
        }
        Tensor::from_vec([b, h, rows.len(), d], data)
    }
    /// The multi-index `[batch, head, seq, dim]` of a flat position.
    pub fn unravel(&self, flat: usize) -> [usize; 4] {
        unravel(self.shape, flat)
    }
}

/// The multi-index of a flat row-major position in `shape`.
pub fn unravel(shape: Shape, mut flat: usize) -> [usize; 4] {
    let mut index = [0; 4];
    for axis in (0..4).rev() {
        index[axis] = flat % shape[axis].max(1);
        flat /= shape[axis].max(1);
    }
    index
}

/// Display name of axis `axis` of a `[batch, heads, seq, dim]` tensor.
pub fn axis_name(axis: usize) -> &'static str {
    AXIS_NAMES[axis]
}
