//! Linear attention over one shard of a longer sequence: the two local passes of
//! sequence-parallel (context-parallel) linear attention, with the states exchanged in between
//! by the caller (poly-dist does it over MPI).
//!
//! Both passes run on one [`ShardInputs`] (the shard's rows, validated once). Pass 1,
//! [`ShardInputs::key_totals`]: the state `Σ B_lᵀ [V_l | 1]` (with the magnitude vector `u`) of
//! each *piece* of the shard, from zero. Between the passes the caller combines the pieces of all
//! shards, in sequence order, into the state before each shard (causal) or the whole sequence's
//! state (non-causal). Pass 2, [`ShardInputs::outputs`]: the shard's outputs from that state.
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
use poly_core::{Mask, Result, Tensor, TensorRef, run_with_threads};
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
            return Err(super::invalid(
                "shard rows",
                format!("{rows:?} of a sequence of {n}, block {}", cfg.block),
                "a non-empty range inside the sequence and a block size ≥ 1",
            ));
        }
        let block = cfg.block.min(n);
        let aligned = |x: usize| x.is_multiple_of(block) || x == n;
        if cfg.local_exact && !(aligned(rows.start) && aligned(rows.end)) {
            return Err(super::invalid(
                "shard rows",
                format!("{rows:?} with exact local blocks of {block}"),
                "shard boundaries on multiples of the block size (the exact local blocks must not straddle shards)",
            ));
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

/// The length of one state for `map` and values of width `d_v`: `m·d_v` for `Z_v = Σ φ(k) vᵀ`,
/// `m` for the normalizer's `z = Σ φ(k)`, then `m` for the magnitudes `u = Σ |φ(k)|` (states are
/// added element by element).
pub fn state_len<T: Element>(map: &dyn FeatureMap<T>, d_v: usize) -> usize {
    map.feature_dim() * (d_v + 2)
}

/// A shard's q, k and v rows, validated once against its plan: both passes run on it.
pub struct ShardInputs<'a, T: Element> {
    problem: Problem<'a, T>,
    plan: ShardPlan,
}

impl<'a, T: Element> ShardInputs<'a, T> {
    /// Checks the shard's rows (`[batch, heads, len, d]`, `[batch, kv_heads, len, d]`, `[batch,
    /// kv_heads, len, d_v]`) and `plan` once, so a bad shard fails before any state is exchanged
    /// and neither pass checks again.
    ///
    /// # Errors
    /// The input errors of [`super::linear_attention`] (indexed in local rows); tensors that do
    /// not hold exactly the plan's rows.
    pub fn new(
        q: TensorRef<'a, T>,
        k: TensorRef<'a, T>,
        v: TensorRef<'a, T>,
        map: &'a dyn FeatureMap<T>,
        cfg: &LinearAttentionConfig,
        plan: ShardPlan,
    ) -> Result<Self> {
        let cfg = cfg.with_block(plan.block);
        let dims = validate(&q, &k, &v, map, &cfg)?;
        if dims.n_q != plan.rows.len() || dims.n_k != plan.rows.len() {
            return Err(super::invalid(
                "shard rows",
                format!(
                    "{} queries and {} keys for the shard {:?}",
                    dims.n_q, dims.n_k, plan.rows
                ),
                "q, k and v holding exactly the shard's rows",
            ));
        }
        let problem = Problem {
            q: q.as_slice(),
            k: k.as_slice(),
            v: v.as_slice(),
            dims,
            map,
            cfg,
        };
        Ok(ShardInputs { problem, plan })
    }

    /// The plan the inputs were checked against.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// Pass 1: the state of each piece of the shard, from zero (see [`ShardTotals`]).
    ///
    /// # Errors
    /// Only if the configured thread pool cannot be started.
    pub fn key_totals(&self) -> Result<ShardTotals<T>> {
        let p = &self.problem;
        let totals = run_with_threads(p.cfg.threads, || scan::all_totals(p, &self.plan.pieces))?;
        Ok(ShardTotals { totals })
    }

    /// Pass 2: the shard's outputs `[batch, heads, len, d_v]`. `before[kv]` is, per (batch, k/v
    /// head), the state of every row before the shard (causal) or of the whole sequence
    /// (non-causal), combined by the caller from the shards' totals in sequence order; `totals`
    /// are this shard's, from [`Self::key_totals`]. Row errors name global rows.
    ///
    /// # Errors
    /// States or totals of the wrong lengths, and the row errors of [`super::linear_attention`].
    pub fn outputs(&self, totals: &ShardTotals<T>, before: &[Vec<T>]) -> Result<Tensor<T>> {
        let (p, plan) = (&self.problem, &self.plan);
        let Dims {
            batch,
            kv_heads,
            d_v,
            ..
        } = p.dims;
        let len = state_len(p.map, d_v);
        let bad_totals = totals.totals.len() != batch * kv_heads
            || totals.totals.iter().any(|t| t.len() != plan.pieces.len());
        if bad_totals || before.len() != batch * kv_heads || before.iter().any(|s| s.len() != len) {
            return Err(super::invalid(
                "shard states",
                format!("{} states", before.len()),
                "one state of m·(d_v + 2) values per (batch, k/v head), and this shard's pass-1 totals",
            ));
        }
        let mut out = Tensor::zeros(p.dims.output_shape())?;
        let mask = p.cfg.mask;
        // The state before piece c: the shard's incoming state plus its earlier pieces, in order.
        let prefixes: Vec<Vec<Vec<T>>> = match mask {
            Mask::Causal => totals
                .totals
                .iter()
                .zip(before)
                .map(|(pieces, start)| scan::prefix_states_from(start, pieces))
                .collect(),
            _ => before.iter().map(|s| vec![s.clone()]).collect(),
        };
        run_with_threads(p.cfg.threads, || {
            let pieces =
                scan::output_pieces(out.as_mut_slice(), plan.rows.len(), d_v, &plan.pieces);
            let results: Vec<Result<()>> = pieces
                .into_par_iter()
                .map(|(bh, c, range, piece)| {
                    let kv = p.dims.kv_index(bh);
                    match mask {
                        Mask::Causal => scan::causal_piece(p, bh, range, &prefixes[kv][c], piece),
                        _ => scan::read_piece(p, bh, range, &prefixes[kv][0], piece),
                    }
                })
                .collect();
            results.into_iter().collect::<Result<()>>()
        })?
        .map_err(|e| {
            e.moved(|mut at| {
                at.row += plan.rows.start;
                at
            })
        })?;
        Ok(out)
    }
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
