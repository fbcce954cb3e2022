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

/// Which keys each query row sees: the mask and window, within the row's sequence when packed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Visibility<'a> {
    pub mask: Mask,
    pub window: Option<usize>,
    pub sequences: Option<&'a Sequences>,
}

impl Visibility<'_> {
    /// The visible keys of `row`: one contiguous range whose ends never decrease with the row
    /// (within a sequence as without), which the engine's tile loop relies on.
    pub fn key_range(&self, dims: &Dims, row: usize) -> Range<usize> {
        let base = dims.key_range(self.mask, self.window, row);
        match self.sequences {
            None => base,
            Some(s) => {
                let seq = s.containing(row);
                let (lo, hi) = (base.start.max(seq.start), base.end.min(seq.end));
                lo.min(hi)..hi
            }
        }
    }
}
