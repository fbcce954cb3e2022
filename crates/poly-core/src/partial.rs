//! Exact attention whose keys arrive block by block: the building block of sequence-parallel
//! (ring) attention and of any split-K scheme outside this crate.
//!
//! A [`PartialAttention`] holds some query rows of a longer sequence and, per row, the running
//! statistics of the streaming engine (the maximum, Σ w', Σ |w'| and Σ w' v, docs/math.md §2.3).
//! Each [`PartialAttention::accumulate`] call folds in one block of keys and values at known global
//! positions; the mask and window are applied in global positions, so the blocks may come in any
//! order and from anywhere. [`PartialAttention::finish`] normalizes, with the engine's row rules.

use crate::config::{AttentionConfig, Kernel, Normalization};
use crate::element::Element;
use crate::engine::{KEY_TILE, QUERY_TILE, QueryTile, Scratch, TilePlan, run_with_threads};
use crate::error::{Error, Result, RowPosition, TensorName};
use crate::kernels::first_non_finite;
use crate::layernorm::layernorm_in_place;
use crate::normalize::{RowTotals, finalize_row};
use crate::online::TileStats;
use crate::resources::check_elements;
use crate::tensor::{Tensor, TensorRef};
use crate::validate::Dims;
use rayon::prelude::*;
use std::ops::Range;

/// The global rows a set of local rows stands for: `segments` in local order, so local row 0 is
/// `segments[0].start`, and the rows of one segment are consecutive.
fn check_segments(
    name: &'static str,
    segments: &[Range<usize>],
    rows: usize,
    n: usize,
) -> Result<()> {
    let total: usize = segments.iter().map(|s| s.len()).sum();
    let bad = segments.iter().find(|s| s.is_empty() || s.end > n);
    if total != rows || bad.is_some() {
        return Err(Error::InvalidParameter {
            name,
            value: format!("{segments:?} for {rows} local rows of a sequence of {n}"),
            expected: "non-empty global row ranges inside the sequence that add up to the local rows",
        });
    }
    Ok(())
}

/// One query tile's place: its (batch, head), its segment and first row inside the segment.
struct TileTask<'a, T> {
    bh: usize,
    global_row: usize,
    q: &'a [T],
    stats: TileStats<'a, T>,
}

/// Exact attention of a set of query rows against keys supplied in blocks (see the module docs).
#[derive(Clone, Debug)]
pub struct PartialAttention<T> {
    cfg: AttentionConfig,
    /// The whole problem: global `n_q` and `n_k`, this holder's batch, heads and widths.
    dims: Dims,
    /// The global query rows held, in local order.
    segments: Vec<Range<usize>>,
    /// Local query rows per (batch, head).
    rows: usize,
    scale: T,
    /// Prepared (LayerNormed when asked) queries, `[batch, heads, rows, d]`.
    q: Vec<T>,
    max: Vec<T>,
    sum: Vec<T>,
    abs_sum: Vec<T>,
    /// `Σ w' v`, `[batch, heads, rows, d_v]`.
    acc: Vec<T>,
}

impl<T: Element> PartialAttention<T> {
    /// Starts attention for the queries `q` (`[batch, heads, rows, d]`), which are the global
    /// query rows `segments` (in order) of a problem with `n_q` queries against `n_k` keys of
    /// `kv_heads` heads and value width `d_v`, read with `cfg` (queries aligned to the last keys
    /// as in [`crate::attention`]).
    ///
    /// # Errors
    /// An invalid configuration; segments that do not describe q's rows; non-finite queries
    /// (indexed in global rows); a head count that `kv_heads` does not divide; no visible key for
    /// some row under `Sum`.
    pub fn new(
        q: TensorRef<'_, T>,
        segments: &[Range<usize>],
        n_q: usize,
        n_k: usize,
        kv_heads: usize,
        d_v: usize,
        cfg: &AttentionConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        let [batch, heads, rows, d] = q.shape();
        if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(Error::HeadGroups { heads, kv_heads });
        }
        if n_k == 0 || d_v == 0 {
            return Err(Error::InvalidParameter {
                name: "partial attention",
                value: format!("n_k {n_k}, d_v {d_v}"),
                expected: "n_k, d_v ≥ 1",
            });
        }
        check_segments("query segments", segments, rows, n_q)?;
        let dims = Dims::new(batch, heads, n_q, n_k, d, d_v).with_kv_heads(kv_heads);
        if let Some(flat) = first_non_finite(q.as_slice()) {
            let [b, h, r, c] = q.unravel(flat);
            return Err(Error::NonFinite {
                tensor: TensorName::Query,
                index: [b, h, global_row(segments, r), c],
                value: q.as_slice()[flat].to_f64(),
            });
        }
        if cfg.normalization == Normalization::Sum
            && dims.key_range(cfg.mask, cfg.window, 0).is_empty()
        {
            return Err(Error::NoVisibleKeys {
                at: RowPosition::new(0, 0, 0),
            });
        }
        let states = batch * heads * rows;
        check_elements(
            "partial attention accumulators",
            &[states, d_v],
            size_of::<T>(),
        )?;
        let mut prepared = q.as_slice().to_vec();
        if cfg.layernorm {
            layernorm_in_place(&mut prepared, d)?;
        }
        let initial_max = match cfg.kernel {
            Kernel::Polynomial { .. } => T::ZERO,
            Kernel::Softmax => T::from_f64(f64::NEG_INFINITY),
        };
        Ok(PartialAttention {
            cfg: *cfg,
            dims,
            segments: segments.to_vec(),
            rows,
            scale: T::from_f64(cfg.effective_scale(d)),
            q: prepared,
            max: vec![initial_max; states],
            sum: vec![T::ZERO; states],
            abs_sum: vec![T::ZERO; states],
            acc: vec![T::ZERO; states * d_v],
        })
    }

    /// Keys as [`Self::accumulate`] wants them: LayerNormed when the configuration asks, after
    /// checking that keys and values are finite. `k` is `[batch, kv_heads, len, d]` and `v`
    /// `[batch, kv_heads, len, d_v]` at the global key rows `segments`; errors index global rows.
    /// A ring prepares its own keys once and sends the prepared ones.
    ///
    /// # Errors
    /// Shapes that disagree with the problem; non-finite keys or values.
    pub fn prepare_keys(
        &self,
        k: TensorRef<'_, T>,
        v: TensorRef<'_, T>,
        segments: &[Range<usize>],
    ) -> Result<Vec<T>> {
        self.check_keys(&k, &v, segments)?;
        for (name, t) in [(TensorName::Key, &k), (TensorName::Value, &v)] {
            if let Some(flat) = first_non_finite(t.as_slice()) {
                let [b, h, r, c] = t.unravel(flat);
                return Err(Error::NonFinite {
                    tensor: name,
                    index: [b, h, global_row(segments, r), c],
                    value: t.as_slice()[flat].to_f64(),
                });
            }
        }
        let mut keys = k.as_slice().to_vec();
        if self.cfg.layernorm {
            layernorm_in_place(&mut keys, self.dims.d)?;
        }
        Ok(keys)
    }

    fn check_keys(
        &self,
        k: &TensorRef<'_, T>,
        v: &TensorRef<'_, T>,
        segments: &[Range<usize>],
    ) -> Result<()> {
        let Dims {
            batch,
            kv_heads,
            d,
            d_v,
            n_k,
            ..
        } = self.dims;
        let len = k.shape()[2];
        for (name, t, width) in [(TensorName::Key, k, d), (TensorName::Value, v, d_v)] {
            let expected = [batch, kv_heads, len, width];
            if let Some(axis) = (0..4).find(|&a| t.shape()[a] != expected[a]) {
                return Err(Error::ShapeMismatch {
                    tensor: name,
                    axis: crate::tensor::axis_name(axis),
                    expected: expected[axis],
                    found: t.shape()[axis],
                });
            }
        }
        check_segments("key segments", segments, len, n_k)
    }

    /// Whether any held query sees any of the keys `segments` (a causal ring skips the blocks
    /// that are entirely in its future).
    pub fn sees(&self, segments: &[Range<usize>]) -> bool {
        self.segments.iter().any(|q| {
            let first = self.visible(q.start);
            let last = self.visible(q.end - 1);
            segments
                .iter()
                .any(|k| first.start.max(k.start) < last.end.min(k.end))
        })
    }

    fn visible(&self, row: usize) -> Range<usize> {
        self.dims.key_range(self.cfg.mask, self.cfg.window, row)
    }

    /// Folds in a block of keys `k` (prepared by [`Self::prepare_keys`], `[batch, kv_heads, len,
    /// d]` flat) and values `v` (`[batch, kv_heads, len, d_v]`) at the global key rows `segments`
    /// (in order). Blocks may come in any order; each key must come once.
    ///
    /// # Errors
    /// Lengths or segments that do not describe a block of this problem.
    pub fn accumulate(&mut self, k: &[T], v: &[T], segments: &[Range<usize>]) -> Result<()> {
        let Dims {
            batch,
            kv_heads,
            d,
            d_v,
            ..
        } = self.dims;
        let len = k.len() / (batch * kv_heads * d);
        let k_view = TensorRef::new(TensorName::Key, [batch, kv_heads, len, d], k)?;
        let v_view = TensorRef::new(TensorName::Value, [batch, kv_heads, len, d_v], v)?;
        self.check_keys(&k_view, &v_view, segments)?;
        if !self.sees(segments) {
            return Ok(());
        }
        let (dims, cfg, scale) = (self.dims, self.cfg, self.scale);
        let tasks = self.tile_tasks();
        let plan = TilePlan {
            query: QUERY_TILE,
            key: KEY_TILE,
            rows: QUERY_TILE,
        };
        let visible_of = |row: usize| dims.key_range(cfg.mask, cfg.window, row);
        run_with_threads(cfg.threads, || {
            tasks.into_par_iter().for_each(|task| {
                let kv = dims.kv_index(task.bh);
                let tile_rows = task.stats.max.len();
                let tile = QueryTile {
                    q: task.q,
                    rows: tile_rows,
                    d,
                    d_v,
                    scale,
                    kernel: cfg.kernel,
                };
                let visible = |r: usize| visible_of(task.global_row + r);
                let (first, last) = (visible(0), visible(tile_rows - 1));
                let mut stats = task.stats;
                Scratch::with(plan, |scratch: &mut Scratch<T>| {
                    let mut block_start = 0;
                    for seg in segments {
                        let keys = first.start.max(seg.start)..last.end.min(seg.end);
                        if keys.start < keys.end {
                            let base = (kv * len + block_start) * d;
                            let values = (kv * len + block_start) * d_v;
                            tile.accumulate(
                                &k[base..base + seg.len() * d],
                                &v[values..values + seg.len() * d_v],
                                seg.start,
                                keys,
                                plan.key,
                                &visible,
                                &mut scratch.scores,
                                stats.reborrow(),
                            );
                        }
                        block_start += seg.len();
                    }
                });
            });
        })?;
        Ok(())
    }

    /// The query tiles of every (batch, head) and segment, with their statistics, for rayon.
    fn tile_tasks(&mut self) -> Vec<TileTask<'_, T>> {
        let Dims { d, d_v, .. } = self.dims;
        let rows = self.rows;
        let mut tasks = Vec::new();
        let per_head = self
            .q
            .chunks(rows * d)
            .zip(self.max.chunks_mut(rows))
            .zip(self.sum.chunks_mut(rows))
            .zip(self.abs_sum.chunks_mut(rows))
            .zip(self.acc.chunks_mut(rows * d_v))
            .enumerate();
        for (bh, ((((mut q, mut max), mut sum), mut abs_sum), mut acc)) in per_head {
            for seg in &self.segments {
                let mut row = seg.start;
                while row < seg.end {
                    let n = QUERY_TILE.min(seg.end - row);
                    let (q_tile, q_rest) = q.split_at(n * d);
                    let (m, m_rest) = std::mem::take(&mut max).split_at_mut(n);
                    let (s, s_rest) = std::mem::take(&mut sum).split_at_mut(n);
                    let (a, a_rest) = std::mem::take(&mut abs_sum).split_at_mut(n);
                    let (o, o_rest) = std::mem::take(&mut acc).split_at_mut(n * d_v);
                    tasks.push(TileTask {
                        bh,
                        global_row: row,
                        q: q_tile,
                        stats: TileStats {
                            max: m,
                            sum: s,
                            abs_sum: a,
                            acc: o,
                        },
                    });
                    (q, max, sum, abs_sum, acc) = (q_rest, m_rest, s_rest, a_rest, o_rest);
                    row += n;
                }
            }
        }
        tasks
    }

    /// The output rows, `[batch, heads, rows, d_v]` in local order.
    ///
    /// # Errors
    /// The row errors of [`crate::attention`] (rows named by global position), the first in
    /// (batch, head, local row) order.
    pub fn finish(self) -> Result<Tensor<T>> {
        let Dims {
            batch, heads, d_v, ..
        } = self.dims;
        let mut out = self.acc;
        for (i, row_out) in out.chunks_exact_mut(d_v).enumerate() {
            let (bh, local) = (i / self.rows, i % self.rows);
            let sum = self.sum[i].to_f64();
            let totals = RowTotals {
                max: self.max[i].to_f64(),
                sum,
                abs_sum: match self.cfg.kernel {
                    Kernel::Polynomial { .. } => self.abs_sum[i].to_f64(),
                    Kernel::Softmax => sum,
                },
            };
            let at = RowPosition::new(bh / heads, bh % heads, global_row(&self.segments, local));
            finalize_row(row_out, totals, self.cfg.kernel, self.cfg.normalization, at)?;
        }
        Tensor::from_vec([batch, heads, self.rows, d_v], out)
    }
}

/// The global row of local row `local` of `segments`.
fn global_row(segments: &[Range<usize>], mut local: usize) -> usize {
    for s in segments {
        if local < s.len() {
            return s.start + local;
        }
        local -= s.len();
    }
    local
}

impl<'a, T> TileStats<'a, T> {
    /// The same statistics, borrowed again for one more block.
    fn reborrow(&mut self) -> TileStats<'_, T> {
        TileStats {
            max: self.max,
            sum: self.sum,
            abs_sum: self.abs_sum,
            acc: self.acc,
        }
    }
}
