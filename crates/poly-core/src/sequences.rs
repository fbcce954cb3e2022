//! Packed variable-length sequences (FlashAttention's `cu_seqlens`): several sequences
//! concatenated on the sequence axis, each attending only within itself, with no padding.

use crate::config::Mask;
use crate::error::{Error, Result};
use crate::validate::Dims;
use std::ops::Range;

/// The sequences packed on the sequence axis, as cumulative offsets `0 = o_0 < o_1 < … = n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequences {
    offsets: Vec<usize>,
}

impl Sequences {
    /// Sequences of these lengths, in order.
    ///
    /// # Errors
    /// No lengths, a length of 0, or lengths whose sum overflows.
    pub fn from_lengths(lengths: &[usize]) -> Result<Self> {
        let invalid = |value: String, expected| Error::InvalidParameter {
            name: "sequence lengths",
            value,
            expected,
        };
        if lengths.is_empty() {
            return Err(invalid("none".into(), "at least one sequence"));
        }
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0usize);
        for (i, &len) in lengths.iter().enumerate() {
            if len == 0 {
                return Err(invalid(format!("length 0 at index {i}"), "lengths ≥ 1"));
            }
            let end = offsets[i]
                .checked_add(len)
                .ok_or_else(|| invalid(format!("{lengths:?}"), "lengths whose sum fits usize"))?;
            offsets.push(end);
        }
        Ok(Sequences { offsets })
    }

    /// Total length: the sequence axis these sequences must fill.
    pub fn total_len(&self) -> usize {
        *self.offsets.last().expect("at least one sequence")
    }

    /// How many sequences are packed.
    pub fn count(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The rows of the sequence that holds `row`.
    pub fn containing(&self, row: usize) -> Range<usize> {
        // The last offset ≤ row starts the sequence.
        let s = self.offsets.partition_point(|&o| o <= row) - 1;
        self.offsets[s]..self.offsets[s + 1]
    }

    /// Checks that the sequences fill both the query and the key axis.
    ///
    /// # Errors
    /// `n_q ≠ n_k`, or lengths that do not sum to n.
    pub fn check(&self, dims: &Dims) -> Result<()> {
        if dims.n_q != dims.n_k || self.total_len() != dims.n_q {
            return Err(Error::InvalidParameter {
                name: "sequence lengths",
                value: format!(
                    "lengths summing to {} for n_q = {}, n_k = {}",
                    self.total_len(),
                    dims.n_q,
                    dims.n_k
                ),
                expected: "lengths that sum to the sequence axis of q, k and v (n_q = n_k)",
            });
        }
        Ok(())
    }
}

/// How the sequence axis of one call is laid out: one sequence per (batch, head), packed
/// sequences, or one right-padded sequence per batch entry with its valid key count. Public only
/// for the compiled entry points ([`crate::Element`]); use [`crate::attention`],
/// [`crate::attention_packed`] or [`crate::attention_padded`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Layout<'a> {
    /// Every key of the head is a candidate.
    Dense,
    /// Packed sequences (see [`crate::attention_packed`]).
    Packed(&'a Sequences),
    /// Valid key counts per batch entry (see [`crate::attention_padded`]).
    KeyPadded(&'a [usize]),
}

impl Layout<'_> {
    /// Checks the layout against the tensors' dimensions.
    ///
    /// # Errors
    /// Packed lengths that do not fill the axis; key lengths that are not one per batch entry,
    /// each in 1..=n_k.
    pub(crate) fn check(&self, dims: &Dims) -> Result<()> {
        match *self {
            Layout::Dense => Ok(()),
            Layout::Packed(s) => s.check(dims),
            Layout::KeyPadded(lengths) => {
                let bad =
                    lengths.len() != dims.batch || lengths.iter().any(|&l| l == 0 || l > dims.n_k);
                if bad {
                    return Err(Error::InvalidParameter {
                        name: "key lengths",
                        value: format!(
                            "{lengths:?} for batch {} and n_k = {}",
                            dims.batch, dims.n_k
                        ),
                        expected: "one valid key count per batch entry, each in 1..=n_k",
                    });
                }
                Ok(())
            }
        }
    }
}

/// Which keys each query row sees: the mask and window, within the row's sequence when packed,
/// below the batch entry's valid length when padded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Visibility<'a> {
    pub mask: Mask,
    pub window: Option<usize>,
    pub layout: Layout<'a>,
}

impl Visibility<'_> {
    /// Whether `row` of batch entry `batch` is a padding query (a right-padded batch's position
    /// at or beyond the entry's valid length): it sees no key and its output is zero, never
    /// judged.
    pub fn is_padding_row(&self, dims: &Dims, batch: usize, row: usize) -> bool {
        match self.layout {
            Layout::KeyPadded(lengths) => row + dims.n_k - dims.n_q >= lengths[batch],
            _ => false,
        }
    }

    /// The visible keys of `row` of batch entry `batch`: one contiguous range whose ends never
    /// decrease with the row, which the engine's tile loop relies on (a padding row's empty range
    /// sits at the entry's length).
    pub fn key_range(&self, dims: &Dims, batch: usize, row: usize) -> Range<usize> {
        if self.is_padding_row(dims, batch, row) {
            let Layout::KeyPadded(lengths) = self.layout else {
                unreachable!("only a padded layout has padding rows")
            };
            return lengths[batch]..lengths[batch];
        }
        let base = dims.key_range(self.mask, self.window, row);
        let limit = match self.layout {
            Layout::Dense => return base,
            Layout::Packed(s) => s.containing(row),
            Layout::KeyPadded(lengths) => 0..lengths[batch],
        };
        let (lo, hi) = (base.start.max(limit.start), base.end.min(limit.end));
        lo.min(hi)..hi
    }
}
