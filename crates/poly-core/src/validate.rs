//! Up-front checks of the q, k, v tensors: shapes agree, nothing is empty, every value is finite.

use crate::config::{AttentionConfig, Mask, Normalization};
use crate::element::Element;
use crate::error::{Error, Result, RowPosition, TensorName};
use crate::kernels::first_non_finite;
use crate::tensor::{TensorRef, axis_name};
use rayon::prelude::*;
use std::ops::Range;

/// The dimensions of one attention problem, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dims {
    /// Batch size.
    pub batch: usize,
    /// Query heads per batch entry.
    pub heads: usize,
    /// Key/value heads per batch entry: `heads` for ordinary multi-head attention, a divisor of
    /// it for grouped-query attention (1: multi-query).
    pub kv_heads: usize,
    /// Number of queries per head.
    pub n_q: usize,
    /// Number of keys (and values) per head.
    pub n_k: usize,
    /// Query/key head dimension.
    pub d: usize,
    /// Value head dimension.
    pub d_v: usize,
}

impl Dims {
    /// The dimensions of `batch × heads` heads of `n_q` queries against `n_k` keys, head
    /// dimension `d` for q and k and `d_v` for v.
    pub const fn new(
        batch: usize,
        heads: usize,
        n_q: usize,
        n_k: usize,
        d: usize,
        d_v: usize,
    ) -> Self {
        Dims {
            batch,
            heads,
            kv_heads: heads,
            n_q,
            n_k,
            d,
            d_v,
        }
    }

    /// The same dimensions with `kv_heads` key/value heads (grouped-query attention).
    pub const fn with_kv_heads(self, kv_heads: usize) -> Self {
        Dims { kv_heads, ..self }
    }

    /// Query heads that share one key/value head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// The flat (batch, key/value head) index that the flat (batch, query head) index `bh`
    /// reads: query head `h` of batch `b` reads k/v head `h / group` of batch `b`.
    pub fn kv_index(&self, bh: usize) -> usize {
        let (batch, head) = (bh / self.heads, bh % self.heads);
        batch * self.kv_heads + head / self.group()
    }

    /// Shape of the output: q's leading dimensions and v's last.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.n_q, self.d_v]
    }
    /// Number of (batch, head) pairs.
    pub fn batch_heads(&self) -> usize {
        self.batch * self.heads
    }
    /// How many keys query `row` sees under `mask` (no window).
    pub fn visible_keys(&self, mask: Mask, row: usize) -> usize {
        self.key_range(mask, None, row).len()
    }

    /// The keys query `row` sees under `mask` and an optional sliding `window` (see
    /// [`crate::AttentionConfig::window`]): always one contiguous range, whose ends never decrease
    /// from one row to the next.
    pub fn key_range(&self, mask: Mask, window: Option<usize>, row: usize) -> Range<usize> {
        let n_k = self.n_k as i128;
        // Queries align with the last keys: row i sits at key position i + n_k − n_q.
        let at = row as i128 + n_k - self.n_q as i128;
        let clamp = |x: i128| x.clamp(0, n_k) as usize;
        let (lo, hi) = match (mask, window) {
            (Mask::Causal, None) => (0, at + 1),
            (Mask::Causal, Some(w)) => (at + 1 - w as i128, at + 1),
            (_, None) => (0, n_k),
            (_, Some(w)) => (at + 1 - w as i128, at + w as i128),
        };
        let (lo, hi) = (clamp(lo), clamp(hi));
        lo.min(hi)..hi
    }
}

fn check_axis(tensor: TensorName, shape: [usize; 4], axis: usize, expected: usize) -> Result<()> {
    if shape[axis] != expected {
        return Err(Error::ShapeMismatch {
            tensor,
            axis: axis_name(axis),
            expected,
            found: shape[axis],
        });
    }
    Ok(())
}

/// Checks the configuration and the tensors, and returns the problem's dimensions.
///
/// # Errors
/// Invalid parameters, empty axes, disagreeing axes (k against q, v against k), non-finite values
/// (first index reported), and causal masks under `Sum` where some query sees no key.
pub fn check_inputs<T: Element>(
    q: &TensorRef<'_, T>,
    k: &TensorRef<'_, T>,
    v: &TensorRef<'_, T>,
    cfg: &AttentionConfig,
) -> Result<Dims> {
    let dims = check_shapes(q, k, v, cfg)?;
    check_values(q, k, v, cfg, &dims, first_non_finite)?;
    Ok(dims)
}

/// The checks of [`check_inputs`] that read no tensor element (the configuration and the
/// shapes): an engine runs them up front and [`check_values_in_pool`] on its own threads.
///
/// # Errors
/// Those of [`check_inputs`] but non-finite values and rows without keys.
pub fn check_shapes<T: Element>(
    q: &TensorRef<'_, T>,
    k: &TensorRef<'_, T>,
    v: &TensorRef<'_, T>,
    cfg: &AttentionConfig,
) -> Result<Dims> {
    cfg.validate()?;
    let tensors = [
        (TensorName::Query, q),
        (TensorName::Key, k),
        (TensorName::Value, v),
    ];
    for (name, t) in tensors {
        if let Some(axis) = t.shape().iter().position(|&n| n == 0) {
            return Err(Error::EmptyDimension {
                tensor: name,
                axis: axis_name(axis),
            });
        }
    }
    let [batch, heads, n_q, d] = q.shape();
    check_axis(TensorName::Key, k.shape(), 0, batch)?;
    let kv_heads = k.shape()[1];
    if !heads.is_multiple_of(kv_heads) {
        return Err(Error::HeadGroups { heads, kv_heads });
    }
    check_axis(TensorName::Key, k.shape(), 3, d)?;
    let n_k = k.shape()[2];
    check_axis(TensorName::Value, v.shape(), 0, batch)?;
    check_axis(TensorName::Value, v.shape(), 1, kv_heads)?;
    check_axis(TensorName::Value, v.shape(), 2, n_k)?;
    Ok(Dims {
        batch,
        heads,
        kv_heads,
        n_q,
        n_k,
        d,
        d_v: v.shape()[3],
    })
}

/// The rest of [`check_inputs`], for shapes [`check_shapes`] accepted as `dims`: the first
/// non-finite value (tensors in q, k, v order; `find` gives the lowest index in one), then rows
/// that see no key under `Sum`.
fn check_values<T: Element>(
    q: &TensorRef<'_, T>,
    k: &TensorRef<'_, T>,
    v: &TensorRef<'_, T>,
    cfg: &AttentionConfig,
    dims: &Dims,
    find: impl Fn(&[T]) -> Option<usize>,
) -> Result<()> {
    for (name, t) in [
        (TensorName::Query, q),
        (TensorName::Key, k),
        (TensorName::Value, v),
    ] {
        if let Some(flat) = find(t.as_slice()) {
            return Err(Error::NonFinite {
                tensor: name,
                index: t.unravel(flat),
                value: t.as_slice()[flat].to_f64(),
            });
        }
    }
    // Visible ranges only grow from row to row: if any row sees nothing, row 0 does.
    if cfg.normalization == Normalization::Sum && dims.key_range(cfg.mask, cfg.window, 0).is_empty()
    {
        return Err(Error::NoVisibleKeys {
            at: RowPosition {
                batch: 0,
                head: 0,
                row: 0,
            },
        });
    }
    Ok(())
}

/// The rest of [`check_inputs`] for inputs [`check_shapes`] accepted as `dims`, the scan shared
/// among the current rayon pool's threads in blocks (the same error: the first bad index of the
/// first tensor holding one). Engines call it inside their pool, so the scan is not a serial
/// prologue and a worker asleep when the call starts is woken by it rather than after it.
///
/// # Errors
/// The first non-finite value (q, k, v in that order), then a row without keys under `Sum`.
pub fn check_values_in_pool<T: Element>(
    q: &TensorRef<'_, T>,
    k: &TensorRef<'_, T>,
    v: &TensorRef<'_, T>,
    cfg: &AttentionConfig,
    dims: &Dims,
) -> Result<()> {
    check_values(q, k, v, cfg, dims, first_non_finite_parallel)
}

/// [`first_non_finite`] over blocks on the current pool's threads: the lowest index still wins.
fn first_non_finite_parallel<T: Element>(data: &[T]) -> Option<usize> {
    // 256 KiB of f32: few enough blocks that small tensors are scanned in one.
    const BLOCK: usize = 1 << 16;
    data.par_chunks(BLOCK)
        .enumerate()
        .find_map_first(|(b, block)| first_non_finite(block).map(|i| b * BLOCK + i))
}
