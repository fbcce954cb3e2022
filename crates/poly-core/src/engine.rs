//! The streaming tiled engine for exact attention.
//!
//! Work is split into tasks of one (batch, head, query tile); rayon runs the tasks, and inside a
//! task everything is sequential. A task walks the key tiles its queries can see:
//!
//! 1. `S = scale · Q_tile K_tileᵀ` (faer GEMM, `Par::Seq`), masked per row under causality;
//! 2. per row, the running maximum `m` (|score| for polynomials, score for softmax) is updated; when
//!    it grows, the row's accumulators are rescaled by `(m_old/m_new)^β` or `e^(m_old − m_new)`;
//! 3. `W = (S/m)^β` or `e^(S − m)` in place (pulp SIMD), with row sums;
//! 4. `O_tile += W V_tile` (faer GEMM accumulating straight into the output rows).
//!
//! Memory beyond inputs and output is one `tq × tk` score tile per task: never `n_q × n_k`.
//! Results do not depend on the thread count: tiles are fixed by the problem shape alone.
//!
//! Small problems (`n_k ≤ SMALL_KEYS`) take all keys as a single tile, i.e. the scores of a query
//! tile are materialized and no rescaling happens — chosen automatically.

use crate::config::{AttentionConfig, Kernel, Mask, Threads};
use crate::element::Element;
use crate::error::{Error, Result, RowPosition};
use crate::gemm::{gemm_abt, gemm_add_ab};
use crate::layernorm::layernorm_rows;
use crate::normalize::{RowTotals, finalize_row};
use crate::online::TileStats;
use crate::sequences::{Layout, Sequences, Visibility};
use crate::tensor::{Tensor, TensorRef};
use crate::validate::{Dims, check_shapes, check_values_in_pool};
use rayon::prelude::*;
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

/// Query rows per task where a tile's rows see keys starting at different places (sliding
/// windows, packed sequences), and per row group on a tall tile's causal diagonal. A taller
/// tile would compute more masked scores at the band's edges or the sequence boundaries.
pub const QUERY_TILE: usize = 64;
/// Query rows per task everywhere else, causal masks included: each key and value tile streamed
/// through the cache then serves twice the rows, and the tile's GEMMs run closer to the GEMM rate
/// (measured: 3–7% faster at n = 1024 … 4096, `poly-bench time`). On a causal diagonal the tile
/// splits into groups of [`QUERY_TILE`] rows, each going only as far as its own last row sees, so
/// the tall tile costs no more masked scores than a short one (against short tiles, causal,
/// batch × heads = 8, 2 threads, binaries alternated with `poly-bench time`, three rounds by
/// minima: β = 4 at n = 2048 5% faster, softmax 1%; n = 1024 within the VM's noise).
pub const WIDE_QUERY_TILE: usize = 128;
/// Keys per tile.
pub const KEY_TILE: usize = 512;
/// Up to this many keys, all keys form one tile.
pub const SMALL_KEYS: usize = 768;
/// The widest key tile a sliding window's band may take as one tile.
const MAX_BAND_TILE: usize = 2048;
/// From this many bytes of keys and values per k/v head, a task of a problem whose rows all see
/// the same keys takes [`SHARED_TILES`] query tiles and runs them all against each key tile in
/// turn, so every key and value tile fetched from memory serves that many tiles' rows while it is
/// still in the core's cache. Below it a head's keys and values stay in the shared L3 from one
/// query tile to the next anyway (2 MiB at n = 4096, d = d_v = 64, f32; at the threshold itself,
/// n = 8192, four tiles a task measured the same as one), and shorter tasks balance better.
const SHARED_TILE_KV_BYTES: usize = 4 << 20;
/// Query tiles per task above [`SHARED_TILE_KV_BYTES`]. At n = 16384 (β = 4, no mask, batch ×
/// heads = 4, 2 threads; a throwaway probe alternating both plans in one process, six rounds each,
/// four runs) one tile per task took 1849, 1836, 1792 and 1722 ms by minima against 1689 (four
/// tiles a task), 1743 (two), 1648 (eight) and 1665 (four) in the same runs.
const SHARED_TILES: usize = 4;

/// Exact attention `softmax/polynomial(scale · Q Kᵀ) V` with the normalization of `cfg`.
///
/// `q` is `[batch, heads, n_q, d]`, `k` is `[batch, heads, n_k, d]`, `v` is `[batch, heads, n_k,
/// d_v]`; the result is `[batch, heads, n_q, d_v]`.
///
/// # Errors
/// Every bad input is an [`Error`]: invalid configuration, shape mismatches, empty axes, non-finite
/// inputs, zero or ill-conditioned `Sum` normalizers, and overflow (see [`crate::Normalization`]).
/// When several rows fail, the first in (batch, head, row) order is reported.
///
/// # Example
/// ```
/// use poly_core::{attention, AttentionConfig, Mask, Tensor};
/// let q = Tensor::from_vec([1, 1, 2, 2], vec![1.0f32, 0.0, 0.0, 1.0])?;
/// let v = Tensor::from_vec([1, 1, 2, 1], vec![10.0f32, 20.0])?;
/// let out = attention(q.view(), q.view(), v.view(), &AttentionConfig::polynomial(2).with_mask(Mask::Causal))?;
/// assert_eq!(out.as_slice(), &[10.0, 20.0]);
/// # Ok::<(), poly_core::Error>(())
/// ```
pub fn attention<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
) -> Result<Tensor<T>> {
    T::attention_compiled(q, k, v, cfg, Layout::Dense)
}

/// [`attention`] into a caller's buffer of `batch · heads · n_q · d_v` elements (row-major
/// `[batch, heads, n_q, d_v]`), every element of which is overwritten.
///
/// A model layer or a serving loop that calls attention repeatedly keeps one output buffer
/// instead of a fresh allocation per call: fresh memory costs a page fault per 4 KiB on first
/// touch, which on virtual machines can cost as much as the attention itself for narrow windows
/// or short sequences (measured by `cargo xtask variants`).
///
/// # Errors
/// As [`attention`], plus a buffer of the wrong length ([`Error::BufferLength`]); on an error the
/// buffer's contents are unspecified.
pub fn attention_into<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    out: &mut [T],
) -> Result<()> {
    T::attention_into_compiled(q, k, v, cfg, Layout::Dense, out)
}

/// [`attention`] over packed variable-length sequences: the sequence axis of q, k and v (n_q =
/// n_k) holds `sequences` one after another, and each query sees only keys of its own sequence
/// (then the mask and window apply within it, positions counted from the sequence's start for
/// the causal mask). Nothing is padded and no cross-sequence tile is computed beyond the tiles
/// that straddle a boundary.
///
/// # Errors
/// As [`attention`], plus sequence lengths that do not fill the sequence axis.
///
/// # Example
/// ```
/// use poly_core::{AttentionConfig, Mask, Sequences, Tensor, attention, attention_packed};
/// let x = Tensor::from_vec([1, 1, 5, 2], (0..10).map(|i| i as f64 / 10.0).collect())?;
/// let cfg = AttentionConfig::polynomial(2).with_mask(Mask::Causal);
/// let packed = attention_packed(x.view(), x.view(), x.view(), &cfg, &Sequences::from_lengths(&[2, 3])?)?;
/// // The second sequence alone gives the same rows.
/// let tail = Tensor::from_vec([1, 1, 3, 2], x.as_slice()[4..].to_vec())?;
/// let alone = attention(tail.view(), tail.view(), tail.view(), &cfg)?;
/// for (a, b) in packed.as_slice()[4..].iter().zip(alone.as_slice()) {
///     assert!((a - b).abs() < 1e-12);
/// }
/// # Ok::<(), poly_core::Error>(())
/// ```
pub fn attention_packed<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    sequences: &Sequences,
) -> Result<Tensor<T>> {
    T::attention_compiled(q, k, v, cfg, Layout::Packed(sequences))
}

/// [`attention`] over a right-padded batch: batch entry b holds `key_lengths[b]` valid keys (and
/// values) at the start of its sequence axis, and no query sees the padding after them (the
/// mask and window apply as usual). Query rows at or beyond an entry's length (aligned as the
/// mask aligns them) are padding: their outputs are 0 and never raise row errors.
///
/// # Errors
/// As [`attention`], plus key lengths that are not one per batch entry, each in 1..=n_k.
pub fn attention_padded<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    key_lengths: &[usize],
) -> Result<Tensor<T>> {
    T::attention_compiled(q, k, v, cfg, Layout::KeyPadded(key_lengths))
}

/// The engine for one element type. [`attention`] reaches it through
/// [`Element::attention_compiled`], so that the engine is compiled once, in this crate, for f32
/// and f64, rather than again in every crate and test binary that calls it.
pub(crate) fn attention_generic<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    layout: Layout<'_>,
) -> Result<Tensor<T>> {
    let dims = check_shapes(&q, &k, &v, cfg)?;
    layout.check(&dims)?;
    crate::resources::check_elements("attention output", &dims.output_shape(), size_of::<T>())?;
    let mut out = Tensor::zeros(dims.output_shape())?;
    attend_checked(q, k, v, cfg, layout, dims, out.as_mut_slice())?;
    Ok(out)
}

/// The engine into a caller's buffer (see [`attention_into`]).
pub(crate) fn attention_into_generic<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    layout: Layout<'_>,
    out: &mut [T],
) -> Result<()> {
    let dims = check_shapes(&q, &k, &v, cfg)?;
    layout.check(&dims)?;
    let expected = dims.output_shape().iter().product::<usize>();
    if out.len() != expected {
        return Err(Error::BufferLength {
            tensor: crate::error::TensorName::Output,
            expected,
            found: out.len(),
        });
    }
    attend_checked(q, k, v, cfg, layout, dims, out)
}

/// The engine for inputs whose shapes [`check_shapes`] accepted as `dims`: their values are
/// checked on the configured threads, which then compute.
fn attend_checked<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    layout: Layout<'_>,
    dims: Dims,
    out: &mut [T],
) -> Result<()> {
    let visibility = Visibility {
        mask: cfg.mask,
        window: cfg.window,
        layout,
    };
    run_with_threads(cfg.threads, || {
        check_values_in_pool(&q, &k, &v, cfg, &dims)?;
        attend_validated(q, k, v, cfg, visibility, dims, out, None)
    })?
}

/// Runs `f` on the configured number of threads.
///
/// Pools for explicit thread counts are built once per count and reused, so repeated calls (a
/// benchmark loop, a server) pay for thread creation only once.
///
/// # Errors
/// If rayon cannot create the pool.
pub fn run_with_threads<R: Send>(threads: Threads, f: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        Threads::Global => Ok(f()),
        Threads::Exact(n) => Ok(pool_with_threads(n.get())?.install(f)),
    }
}

fn pool_with_threads(n: usize) -> Result<Arc<rayon::ThreadPool>> {
    crate::resources::check_threads(n)?;
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(pool) = pools.get(&n) {
        return Ok(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Error::InvalidParameter {
            name: "threads",
            value: format!("{n} ({e})"),
            expected: "a thread count the system can start",
        })?;
    let pool = Arc::new(pool);
    pools.insert(n, Arc::clone(&pool));
    Ok(pool)
}

/// Tile sizes for one problem (a function of the shape only, so results are thread-independent).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TilePlan {
    /// Query rows per GEMM.
    pub query: usize,
    /// Keys per GEMM (at most).
    pub key: usize,
    /// Query rows per task: `query`, or a multiple of it whose tiles share each key tile.
    pub rows: usize,
}

impl TilePlan {
    /// The tiles for `dims` under `visibility`: [`QUERY_TILE`] or [`WIDE_QUERY_TILE`] query rows
    /// (see there); under a sliding window, a query tile's band of keys (at most `w + tq − 1`
    /// causal, `2w + tq − 2` otherwise) is one key tile when it fits `MAX_BAND_TILE`, so a narrow
    /// window never ends in a small trailing GEMM.
    ///
    /// Where every row sees every key (no mask, no window, one dense sequence) and a head's keys
    /// and values take at least [`SHARED_TILE_KV_BYTES`] of `element_bytes`-wide elements, a task
    /// holds [`SHARED_TILES`] query tiles (see there).
    fn for_problem(dims: &Dims, visibility: &Visibility<'_>, element_bytes: usize) -> Self {
        let wide = visibility.window.is_none() && !matches!(visibility.layout, Layout::Packed(_));
        let query = if wide { WIDE_QUERY_TILE } else { QUERY_TILE }.min(dims.n_q);
        let same_keys = visibility.mask == Mask::None
            && visibility.window.is_none()
            && matches!(visibility.layout, Layout::Dense);
        let kv_bytes = dims
            .n_k
            .saturating_mul(dims.d + dims.d_v)
            .saturating_mul(element_bytes);
        let rows = if same_keys && kv_bytes >= SHARED_TILE_KV_BYTES {
            (SHARED_TILES * query).min(dims.n_q)
        } else {
            query
        };
        let band = visibility.window.map(|w| match visibility.mask {
            Mask::Causal => w.saturating_add(query - 1),
            _ => w.saturating_mul(2).saturating_add(query).saturating_sub(2),
        });
        let key = match band {
            Some(b) if b <= MAX_BAND_TILE => b.min(dims.n_k),
            _ if dims.n_k <= SMALL_KEYS => dims.n_k,
            _ => KEY_TILE,
        };
        TilePlan { query, key, rows }
    }
}

/// Everything the tasks of one (batch, head) share: its inputs (LayerNormed if requested) and
/// the problem's configuration.
struct HeadJob<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    cfg: &'a AttentionConfig,
    visibility: Visibility<'a>,
    dims: &'a Dims,
    plan: TilePlan,
    scale: T,
    batch: usize,
    head: usize,
}

/// A worker's score tile and row statistics, kept by the thread across tasks and calls: a fresh
/// tile per task (or per call) is a fresh allocation, which first calls pay for in page faults.
pub(crate) struct Scratch<T> {
    pub scores: Vec<T>,
    pub max: Vec<T>,
    pub sum: Vec<T>,
    pub abs_sum: Vec<T>,
}

thread_local! {
    /// This thread's scratch of each element type (at most one f32 and one f64), while idle.
    static IDLE_SCRATCH: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

impl<T: Element> Scratch<T> {
    /// Lends this thread's scratch of type `T`, grown to `plan` if it is smaller, to `f`. It is
    /// taken out while `f` runs, so a nested call would simply make its own.
    pub fn with<R>(plan: TilePlan, f: impl FnOnce(&mut Scratch<T>) -> R) -> R {
        // The box itself goes back and forth, so lending allocates nothing after the first time.
        let mut boxed: Box<dyn Any> = IDLE_SCRATCH
            .with_borrow_mut(|idle| {
                let at = idle.iter().position(|s| s.is::<Scratch<T>>())?;
                Some(idle.swap_remove(at))
            })
            .unwrap_or_else(|| {
                Box::new(Scratch::<T> {
                    scores: Vec::new(),
                    max: Vec::new(),
                    sum: Vec::new(),
                    abs_sum: Vec::new(),
                })
            });
        let scratch = boxed
            .downcast_mut::<Scratch<T>>()
            .expect("found or made as a Scratch<T>");
        let grow = |v: &mut Vec<T>, len: usize| {
            if v.len() < len {
                v.resize(len, T::ZERO);
            }
        };
        grow(&mut scratch.scores, plan.query * plan.key);
        for v in [&mut scratch.max, &mut scratch.sum, &mut scratch.abs_sum] {
            grow(v, plan.rows);
        }
        let result = f(scratch);
        IDLE_SCRATCH.with_borrow_mut(|idle| idle.push(boxed));
        result
    }
}

/// The engine on the current rayon pool, for inputs already checked as `dims`. Every element of
/// `out` is overwritten: each task zeroes its own rows before accumulating into them, so the
/// zeroing is shared among the threads and leaves the rows in the cache that uses them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_validated<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    cfg: &AttentionConfig,
    visibility: Visibility<'_>,
    dims: Dims,
    out: &mut [T],
    stats: Option<&mut [RowStat]>,
) -> Result<()> {
    let (q_data, k_data): (Cow<[T]>, Cow<[T]>) = if cfg.layernorm {
        (
            Cow::Owned(layernorm_rows(q.as_slice(), dims.d)?),
            Cow::Owned(layernorm_rows(k.as_slice(), dims.d)?),
        )
    } else {
        (Cow::Borrowed(q.as_slice()), Cow::Borrowed(k.as_slice()))
    };
    let plan = TilePlan::for_problem(&dims, &visibility, size_of::<T>());
    let scale = T::from_f64(cfg.effective_scale(dims.d));
    let q_head = dims.n_q * dims.d;
    let k_head = dims.n_k * dims.d;
    let v_head = dims.n_k * dims.d_v;
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let mut head_stats: Vec<Option<&mut [RowStat]>> = match stats {
        Some(s) => s.chunks_mut(dims.n_q).map(Some).collect(),
        None => (0..dims.batch_heads()).map(|_| None).collect(),
    };
    out.par_chunks_mut(dims.n_q * dims.d_v)
        .zip(head_stats.par_iter_mut())
        .enumerate()
        .for_each(|(bh, (head_out, head_stats))| {
            let job = HeadJob {
                q: &q_data[bh * q_head..(bh + 1) * q_head],
                k: &k_data[dims.kv_index(bh) * k_head..(dims.kv_index(bh) + 1) * k_head],
                v: &v.as_slice()[dims.kv_index(bh) * v_head..(dims.kv_index(bh) + 1) * v_head],
                cfg,
                visibility,
                dims: &dims,
                plan,
                scale,
                batch: bh / dims.heads,
                head: bh % dims.heads,
            };
            let tiles = dims.n_q.div_ceil(plan.rows);
            let mut tile_stats: Vec<Option<&mut [RowStat]>> = match head_stats.take() {
                Some(s) => s.chunks_mut(plan.rows).map(Some).collect(),
                None => (0..tiles).map(|_| None).collect(),
            };
            // Last tiles first: under a causal mask they see the most keys, so a thread's last
            // tasks are its shortest and the threads finish closer together (tail gap at causal
            // n = 2048: median 0.64 → 0.08 ms, 20 calls of an instrumented build; the calls'
            // times moved less than the host's noise).
            head_out
                .par_chunks_mut(plan.rows * dims.d_v)
                .zip(tile_stats.par_iter_mut())
                .enumerate()
                .rev()
                .for_each(|(tile, (tile_out, stats))| {
                    let first_row = tile * plan.rows;
                    let stats = stats.take();
                    let result = Scratch::with(plan, |scratch| {
                        job.attend_query_tile(first_row, tile_out, scratch, stats)
                    });
                    if let Err(e) = result {
                        record_first_error(&first_error, e);
                    }
                });
        });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Where a row error happened (errors of whole inputs have no position).
fn error_position(e: &Error) -> Option<(usize, usize, usize)> {
    match e {
        Error::AllScoresZero { at }
        | Error::IllConditionedNormalizer { at, .. }
        | Error::NoVisibleKeys { at }
        | Error::Overflow { at, .. } => Some((at.batch, at.head, at.row)),
        _ => None,
    }
}

/// Keeps the error of the first row in (batch, head, row) order, so reports are deterministic.
fn record_first_error(slot: &Mutex<Option<Error>>, e: Error) {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    let replace = match guard.as_ref() {
        None => true,
        Some(old) => error_position(&e) < error_position(old),
    };
    if replace {
        *guard = Some(e);
    }
}

impl<T: Element> HeadJob<'_, T> {
    /// Attention for query rows `first_row ..` of this head; `out` holds exactly those rows, and
    /// `stats` (when the backward pass needs them) their [`RowStat`]s.
    fn attend_query_tile(
        &self,
        first_row: usize,
        out: &mut [T],
        scratch: &mut Scratch<T>,
        mut stats: Option<&mut [RowStat]>,
    ) -> Result<()> {
        let (cfg, dims) = (self.cfg, self.dims);
        let Dims { d, d_v, .. } = *dims;
        let rows = out.len() / d_v;
        // The key tiles accumulate into the output rows.
        out.fill(T::ZERO);
        let q_tile = &self.q[first_row * d..(first_row + rows) * d];
        let initial_max = match cfg.kernel {
            Kernel::Polynomial { .. } => T::ZERO,
            Kernel::Softmax => T::from_f64(f64::NEG_INFINITY),
        };
        scratch.max[..rows].fill(initial_max);
        scratch.sum[..rows].fill(T::ZERO);
        scratch.abs_sum[..rows].fill(T::ZERO);
        let visible = |r: usize| self.visibility.key_range(dims, self.batch, first_row + r);
        // Ranges never shrink from row to row: the tile's keys run from its first row's first
        // visible key to its last row's last one, so tiles outside a window's band are skipped.
        let keys = visible(0).start..visible(rows - 1).end;
        let tile = QueryTile {
            q: q_tile,
            rows,
            d,
            d_v,
            scale: self.scale,
            kernel: cfg.kernel,
        };
        self.stream_keys(tile, keys, &visible, scratch, out);
        for (r, acc) in out.chunks_exact_mut(d_v).enumerate() {
            if self
                .visibility
                .is_padding_row(dims, self.batch, first_row + r)
            {
                acc.fill(T::ZERO);
                if let Some(stats) = stats.as_deref_mut() {
                    stats[r] = RowStat::default();
                }
                continue;
            }
            let sum = scratch.sum[r].to_f64();
            let totals = RowTotals {
                max: scratch.max[r].to_f64(),
                sum,
                // Softmax weights are positive: their absolute sum is their sum.
                abs_sum: match cfg.kernel {
                    Kernel::Polynomial { .. } => scratch.abs_sum[r].to_f64(),
                    Kernel::Softmax => sum,
                },
            };
            let at = RowPosition {
                batch: self.batch,
                head: self.head,
                row: first_row + r,
            };
            let multiplier = finalize_row(acc, totals, cfg.kernel, cfg.normalization, at)?;
            if let Some(stats) = stats.as_deref_mut() {
                stats[r] = RowStat {
                    max: totals.max,
                    multiplier,
                };
            }
        }
        Ok(())
    }

    /// The online pass of `tile` (its rows' statistics in `scratch`, their accumulators in `out`)
    /// over the keys `keys`, row `r` seeing `visible(r)`. A tall tile whose rows' key ranges end at
    /// different keys (the causal diagonal) takes the keys all its rows see as a whole, then the
    /// rest in groups of [`QUERY_TILE`] rows, each only as far as its own last row sees: the tall
    /// tile's GEMMs without the masked half of a tall diagonal block.
    fn stream_keys(
        &self,
        tile: QueryTile<'_, T>,
        keys: Range<usize>,
        visible: &dyn Fn(usize) -> Range<usize>,
        scratch: &mut Scratch<T>,
        out: &mut [T],
    ) {
        let Scratch {
            scores,
            max,
            sum,
            abs_sum,
        } = scratch;
        let mut pass = |first: usize, last: usize, keys: Range<usize>| {
            let rows = QueryTile {
                q: &tile.q[first * tile.d..last * tile.d],
                rows: last - first,
                ..tile
            };
            let stats = TileStats {
                max: &mut max[first..last],
                sum: &mut sum[first..last],
                abs_sum: &mut abs_sum[first..last],
                acc: &mut out[first * tile.d_v..last * tile.d_v],
            };
            let visible = |r: usize| visible(first + r);
            rows.accumulate(
                self.k,
                self.v,
                0,
                keys,
                self.plan.key,
                &visible,
                scores,
                stats,
            );
        };
        if tile.rows > self.plan.query {
            // A task of several query tiles whose rows all see `keys` (`TilePlan::rows`): each
            // key tile goes through every query tile in turn while it is in the cache, cut where
            // one tile's pass cuts it (`key_tiles`), so every row's result is the same bit for
            // bit as with one query tile per task.
            for tile_keys in key_tiles(keys, self.plan.key) {
                for first in (0..tile.rows).step_by(self.plan.query) {
                    let last = (first + self.plan.query).min(tile.rows);
                    pass(first, last, tile_keys.clone());
                }
            }
            return;
        }
        let split = match visible(0).end {
            end if tile.rows > QUERY_TILE && end < keys.end => (end / 16 * 16).max(keys.start),
            _ => keys.end,
        };
        pass(0, tile.rows, keys.start..split);
        if split < keys.end {
            for first in (0..tile.rows).step_by(QUERY_TILE) {
                let last = (first + QUERY_TILE).min(tile.rows);
                let end = visible(last - 1).end;
                if end > split {
                    pass(first, last, split..end);
                }
            }
        }
    }
}

/// One tile of prepared query rows and what scoring them needs.
#[derive(Clone, Copy)]
pub(crate) struct QueryTile<'a, T> {
    pub q: &'a [T],
    pub rows: usize,
    pub d: usize,
    pub d_v: usize,
    pub scale: T,
    pub kernel: Kernel,
}

impl<T: Element> QueryTile<'_, T> {
    /// The online pass over the keys `keys` (global key indices) in tiles of at most `width`:
    /// `k` and `v` hold the keys and values from global index `key_base` on, and row `r` sees
    /// the keys `visible(r)` (clipped to each tile). Shared by the engine, whose keys are all
    /// there, and by [`crate::PartialAttention`], whose keys arrive block by block.
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate(
        &self,
        k: &[T],
        v: &[T],
        key_base: usize,
        keys: Range<usize>,
        width: usize,
        visible: &dyn Fn(usize) -> Range<usize>,
        scores: &mut [T],
        stats: TileStats<'_, T>,
    ) {
        let (rows, d, d_v) = (self.rows, self.d, self.d_v);
        let mut stats = stats;
        for tile_keys in key_tiles(keys, width) {
            let cols = tile_keys.len();
            let scores = &mut scores[..rows * cols];
            let local = tile_keys.start - key_base;
            let k_tile = &k[local * d..(local + cols) * d];
            gemm_abt(scores, self.q, k_tile, rows, cols, d, self.scale);
            stats.update(scores, tile_keys.start, visible, self.kernel);
            let v_tile = &v[local * d_v..(local + cols) * d_v];
            gemm_add_ab(stats.acc, scores, v_tile, rows, d_v, cols);
        }
    }
}

/// The key tiles of `keys`, at most `width` wide, as [`QueryTile::accumulate`] takes them: the one
/// definition of their boundaries, which a task of several query tiles follows too so that its
/// rows' bits are those of one tile per task.
fn key_tiles(keys: Range<usize>, width: usize) -> impl Iterator<Item = Range<usize>> {
    let even = even_width(keys.len(), width).max(1);
    keys.clone()
        .step_by(even)
        .map(move |start| start..(start + even).min(keys.end))
}

/// The width of the key tiles that cut `len` keys into as few tiles of at most `width` as
/// possible, of nearly equal widths (rounded up to whole SIMD registers where `width` allows): a
/// causal tile's keys `0 ..= last row` never end in a sliver of a tile, whose small GEMMs would run
/// far below the GEMM rate.
fn even_width(len: usize, width: usize) -> usize {
    let width = width.max(1);
    let tiles = len.div_ceil(width).max(1);
    len.div_ceil(tiles).next_multiple_of(16).min(width)
}

/// What the backward pass needs of a forward row: the running maximum `m` the scale-free weights
/// `w'` were taken against (`(s/m)^β`, `exp(s − m)`) and the multiplier that turned `Σ w' v`
/// into the output, so `P_ij = w'_ij · multiplier`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RowStat {
    pub max: f64,
    pub multiplier: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tiles_cover_the_keys_in_order_at_most_width_wide() {
        for (start, len, width) in [(0, 1, 512), (5, 2700, 512), (0, 896, 512), (100, 512, 512)] {
            let tiles: Vec<_> = key_tiles(start..start + len, width).collect();
            assert_eq!(tiles.len(), len.div_ceil(width), "{len} keys by {width}");
            assert_eq!(tiles.first().map(|t| t.start), Some(start));
            assert_eq!(tiles.last().map(|t| t.end), Some(start + len));
            assert!(tiles.windows(2).all(|w| w[0].end == w[1].start));
            assert!(tiles.iter().all(|t| !t.is_empty() && t.len() <= width));
        }
        assert_eq!(key_tiles(7..7, 512).count(), 0);
    }

    /// The premise of the integration tests of tasks of several query tiles
    /// (`tasks_of_several_query_tiles_…` in properties.rs and backward.rs): their shape groups,
    /// and nothing whose rows see different keys does.
    #[test]
    fn only_rows_that_all_see_every_key_share_a_task_past_the_size() {
        let plan = |n_k: usize, mask: Mask, window: Option<usize>, layout: Layout<'_>| {
            let dims = Dims::new(1, 1, 600, n_k, 200, 200);
            let visibility = Visibility {
                mask,
                window,
                layout,
            };
            TilePlan::for_problem(&dims, &visibility, size_of::<f32>())
        };
        let grouped = plan(2700, Mask::None, None, Layout::Dense);
        assert_eq!((grouped.query, grouped.rows), (128, 4 * 128));
        let lengths = [600];
        for other in [
            plan(2000, Mask::None, None, Layout::Dense),
            plan(2700, Mask::Causal, None, Layout::Dense),
            plan(2700, Mask::None, Some(300), Layout::Dense),
            plan(2700, Mask::None, None, Layout::KeyPadded(&lengths)),
        ] {
            assert_eq!(other.rows, other.query, "{other:?}");
        }
    }
}
