//! Linear attention over one shard of a longer sequence: the two local passes of
//! sequence-parallel (context-parallel) linear attention, with the states exchanged in between
//! by the caller (poly-dist does it over MPI).
//!
//! Pass 1, [`shard_key_totals`]: the state `Σ B_lᵀ [V_l | 1]` (with the magnitude vector `u`) of
//! each *piece* of the shard, from zero. Between the passes the caller combines the pieces of all
//! shards, in sequence order, into the state before each shard (causal) or the whole sequence's
//! state (non-causal). Pass 2, [`shard_outputs`]: the shard's outputs from that state.
//!
//! Pieces are the shard cut at the boundaries of the single-process engine's chunk grid
//! ([`scan_chunks`]), so when every shard boundary lies on that grid the pieces *are* the
//! engine's chunks, and adding their totals in order from zero repeats the engine's additions:
//! the result is bit-identical to [`super::linear_attention`] on the whole sequence.

use super::LinearAttentionConfig;
use super::scan::{self, Problem};
use super::validate;
use crate::feature_map::FeatureMap;
use poly_core::{Dims, Element};
use poly_core::{Error, Mask, Result, Tensor, TensorRef, run_with_threads};
use rayon::prelude::*;
use std::ops::Range;

/// The chunk grid of the single-process engine for a sequence of `n` rows in blocks of `block`
/// (clamped to `n`, as the engine clamps it): the row ranges whose states it adds in order.
pub fn scan_chunks(n: usize, block: usize) -> Vec<Range<usize>> {
    scan::chunks(n, block.clamp(1, n.max(1)))
}

/// One shard's place in the whole sequence and its pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// Rows of the whole sequence.
    pub n: usize,
    /// The shard's global rows.
    pub rows: Range<usize>,
    /// The effective block size (the configured one clamped to `n`).
    pub block: usize,
    /// The shard's pieces in local rows, in order.
    pub pieces: Vec<Range<usize>>,
}

impl ShardPlan {
    /// The plan of the shard `rows` of a sequence of `n` under `cfg`.
    ///
    /// # Errors
    /// An empty shard or one outside `0..n`; a block size of 0; with exact local blocks (the
    /// mixed variant, whose result depends on where blocks start), a shard boundary that is not
    /// a multiple of the block size.
    pub fn new(n: usize, rows: Range<usize>, cfg: &LinearAttentionConfig) -> Result<Self> {
        if rows.is_empty() || rows.end > n || cfg.block == 0 {
            return Err(Error::InvalidParameter {
                name: "shard rows",
                value: format!("{rows:?} of a sequence of {n}, block {}", cfg.block),
                expected: "a non-empty range inside the sequence and a block size ≥ 1",
            });
        }
        let block = cfg.block.min(n);
        let aligned = |x: usize| x.is_multiple_of(block) || x == n;
        if cfg.local_exact && !(aligned(rows.start) && aligned(rows.end)) {
            return Err(Error::InvalidParameter {
                name: "shard rows",
                value: format!("{rows:?} with exact local blocks of {block}"),
                expected: "shard boundaries on multiples of the block size (the exact local blocks must not straddle shards)",
            });
        }
        let mut cuts: Vec<usize> = scan_chunks(n, block)
            .iter()
            .map(|c| c.start)
            .filter(|&s| rows.start < s && s < rows.end)
            .collect();
        cuts.insert(0, rows.start);
        cuts.push(rows.end);
        let pieces = cuts
            .windows(2)
            .map(|w| w[0] - rows.start..w[1] - rows.start)
            .collect();
        Ok(ShardPlan {
            n,
            rows,
            block,
            pieces,
        })
    }
}

/// The length of one state for `map` and values of width `d_v`: `m (d_v + 1)` for `Z`, then
/// `m` for the magnitudes `u` (states are added element by element).
pub fn state_len<T: Element>(map: &dyn FeatureMap<T>, d_v: usize) -> usize {
    map.feature_dim() * (d_v + 2)
}

fn shard_problem<'a, T: Element>(
    q: &TensorRef<'a, T>,
    k: &TensorRef<'a, T>,
    v: &TensorRef<'a, T>,
    map: &'a dyn FeatureMap<T>,
    cfg: &'a LinearAttentionConfig,
    plan: &ShardPlan,
) -> Result<Problem<'a, T>> {
    let dims = validate(q, k, v, map, cfg)?;
    if dims.n_q != plan.rows.len() || dims.n_k != plan.rows.len() {
        return Err(Error::InvalidParameter {
            name: "shard rows",
            value: format!(
                "{} queries and {} keys for the shard {:?}",
                dims.n_q, dims.n_k, plan.rows
            ),
            expected: "q, k and v holding exactly the shard's rows",
        });
    }
    Ok(Problem {
        q: q.as_slice(),
        k: k.as_slice(),
        v: v.as_slice(),
        dims,
        map,
        cfg,
    })
}

/// What pass 1 leaves: the state of each piece of the shard, from zero, per (batch, k/v head).
#[derive(Clone, Debug, PartialEq)]
pub struct ShardTotals<T> {
    /// `totals[kv][piece]`, each of [`state_len`].
    pub totals: Vec<Vec<Vec<T>>>,
}

impl<T: Element> ShardTotals<T> {
    /// Adds this shard's piece states, in order, to `running` (one state per (batch, k/v head)):
    /// what an ordered scan does at each shard, and so the state handed to the next shard.
    pub fn add_to(&self, running: &mut [Vec<T>]) {
        for (run, pieces) in running.iter_mut().zip(&self.totals) {
            for t in pieces {
                run.iter_mut().zip(t).for_each(|(a, &b)| *a += b);
            }
        }
    }

    /// The sum of this shard's piece states per (batch, k/v head), from zero, in order.
    pub fn sum(&self) -> Vec<Vec<T>> {
        let len = self
            .totals
            .first()
            .and_then(|p| p.first())
            .map_or(0, Vec::len);
        let mut out = vec![vec![T::ZERO; len]; self.totals.len()];
        self.add_to(&mut out);
        out
    }
}

/// Pass 1: the state of each piece of the shard, from zero (see [`ShardTotals`]). `q`, `k`, `v`
/// are the shard's rows (`[batch, heads, len, d]`, `[batch, kv_heads, len, d]`, `[batch, kv_heads,
/// len, d_v]`); q is validated here too, so that a bad shard fails before any state is exchanged.
///
/// # Errors
/// The input errors of [`super::linear_attention`] (indexed in local rows); a shard that does not
/// match `plan`.
pub fn shard_key_totals<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    plan: &ShardPlan,
) -> Result<ShardTotals<T>> {
    let cfg = &cfg.with_block(plan.block);
    let p = shard_problem(&q, &k, &v, map, cfg, plan)?;
    let totals = run_with_threads(cfg.threads, || scan::all_totals(&p, &plan.pieces))?;
    Ok(ShardTotals { totals })
}

/// Pass 2: the shard's outputs `[batch, heads, len, d_v]`. `before[kv]` is, per (batch, k/v
/// head), the state of every row before the shard (causal) or of the whole sequence
/// (non-causal), combined by the caller from the shards' totals in sequence order; `totals` are
/// this shard's, from pass 1. Row errors name global rows.
///
/// # Errors
/// As [`shard_key_totals`], states of the wrong length, and the row errors of
/// [`super::linear_attention`].
#[allow(clippy::too_many_arguments)]
pub fn shard_outputs<T: Element>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    plan: &ShardPlan,
    totals: &ShardTotals<T>,
    before: &[Vec<T>],
) -> Result<Tensor<T>> {
    let cfg = &cfg.with_block(plan.block);
    let p = shard_problem(&q, &k, &v, map, cfg, plan)?;
    let Dims {
        batch,
        kv_heads,
        d_v,
        ..
    } = p.dims;
    let len = state_len(map, d_v);
    let bad_totals = totals.totals.len() != batch * kv_heads
        || totals.totals.iter().any(|t| t.len() != plan.pieces.len());
    if bad_totals || before.len() != batch * kv_heads || before.iter().any(|s| s.len() != len) {
        return Err(Error::InvalidParameter {
            name: "shard states",
            value: format!("{} states", before.len()),
            expected: "one state of m·(d_v + 2) values per (batch, k/v head), and this shard's pass-1 totals",
        });
    }
    let mut out = Tensor::zeros(p.dims.output_shape())?;
    let offset = plan.rows.start;
    // The state before piece c: the shard's incoming state plus its earlier pieces, in order.
    let prefixes: Vec<Vec<Vec<T>>> = match cfg.mask {
        Mask::Causal => totals
            .totals
            .iter()
            .zip(before)
            .map(|(pieces, start)| scan::prefix_states_from(start, pieces))
            .collect(),
        _ => before.iter().map(|s| vec![s.clone()]).collect(),
    };
    run_with_threads(cfg.threads, || {
        let pieces = scan::output_pieces(out.as_mut_slice(), plan.rows.len(), d_v, &plan.pieces);
        let results: Vec<Result<()>> = pieces
            .into_par_iter()
            .map(|(bh, c, range, piece)| {
                let kv = p.dims.kv_index(bh);
                match cfg.mask {
                    Mask::Causal => scan::causal_piece(&p, bh, range, &prefixes[kv][c], piece),
                    _ => scan::read_piece(&p, bh, range, &prefixes[kv][0], piece),
                }
            })
            .collect();
        results.into_iter().collect::<Result<()>>()
    })?
    .map_err(|e| {
        e.moved(|mut at| {
            at.row += offset;
            at
        })
    })?;
    Ok(out)
}
