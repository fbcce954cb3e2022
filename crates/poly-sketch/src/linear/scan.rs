//! The order in which blocks are processed.
//!
//! Each head's blocks are grouped into at most [`CHUNKS`] chunks of consecutive blocks, fixed by
//! `n` and `b` alone. A chunk's state `P` runs from zero over its own blocks, and block `l` of
//! chunk `c` reads `Z_l = S_c + P_l`, where `S_c` sums the totals of the earlier chunks in order.
//! A sequential scan (one task per head) and the two-pass scan (pass 1: every chunk's total in
//! parallel; pass 2: every chunk's outputs in parallel from its `S_c`) thus perform the same
//! floating-point operations, so the thread count never changes a bit of the result. The two-pass
//! scan runs when there are fewer heads than threads; it recomputes the key features once more.

use super::LinearAttentionConfig;
use super::block::{Head, Scratch};
use crate::feature_map::FeatureMap;
use poly_core::{Dims, Element, Result};
use rayon::prelude::*;
use std::ops::Range;

/// The most chunks a head's blocks are split into: the parallelism of the two-pass scan.
pub(super) const CHUNKS: usize = 16;

/// Everything one call computes.
pub(super) struct Problem<'a, T: Element> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub dims: Dims,
    pub map: &'a dyn FeatureMap<T>,
    /// Owned (it is `Copy`): a shard's problem carries its own clamped block size.
    pub cfg: LinearAttentionConfig,
}

impl<'a, T: Element> Problem<'a, T> {
    fn head(&self, bh: usize) -> Head<'_, T> {
        let Dims {
            d, d_v, n_q, n_k, ..
        } = self.dims;
        let kv = self.dims.kv_index(bh);
        Head {
            q: &self.q[bh * n_q * d..(bh + 1) * n_q * d],
            // Grouped-query attention: the k/v head this query head's group shares.
            k: &self.k[kv * n_k * d..(kv + 1) * n_k * d],
            v: &self.v[kv * n_k * d_v..(kv + 1) * n_k * d_v],
            d,
            d_v,
            map: self.map,
            cfg: &self.cfg,
            batch: bh / self.dims.heads,
            head: bh % self.dims.heads,
        }
    }

    fn block(&self) -> usize {
        self.cfg.block
    }

    fn state_len(&self) -> usize {
        self.head(0).state_len()
    }

    /// Whether to split heads across threads (fewer heads than threads).
    fn split_heads(&self) -> bool {
        self.dims.batch_heads() < rayon::current_num_threads()
    }
}

/// The row ranges of the chunks of `n` rows in blocks of `b`.
pub(super) fn chunks(n: usize, b: usize) -> Vec<Range<usize>> {
    let blocks = n.div_ceil(b);
    let per_chunk = blocks.div_ceil(CHUNKS).max(1);
    (0..blocks)
        .step_by(per_chunk)
        .map(|first| first * b..((first + per_chunk) * b).min(n))
        .collect()
}

/// The blocks `(start, rows)` of a row range.
fn blocks(range: Range<usize>, b: usize) -> impl Iterator<Item = (usize, usize)> {
    range
        .clone()
        .step_by(b)
        .map(move |s| (s, b.min(range.end - s)))
}

/// `Σ_{blocks} B_lᵀ [V_l | 1]` over one chunk of key rows, from zero.
fn chunk_total<T: Element>(
    head: &Head<'_, T>,
    range: Range<usize>,
    b: usize,
    len: usize,
) -> Vec<T> {
    let mut s = head.scratch(b);
    let mut total = vec![T::ZERO; len];
    for (start, rows) in blocks(range, b) {
        head.key_block(start, rows, &mut s);
        head.absorb(rows, &s, &mut total);
    }
    total
}

/// `S_c` for every chunk: exclusive prefix sums of the chunk totals, in order.
fn prefix_states<T: Element>(totals: &[Vec<T>], len: usize) -> Vec<Vec<T>> {
    prefix_states_from(&vec![T::ZERO; len], totals)
}

/// The exclusive prefix sums of `totals`, in order, starting from `start` (the state of every row
/// before the first chunk).
pub(super) fn prefix_states_from<T: Element>(start: &[T], totals: &[Vec<T>]) -> Vec<Vec<T>> {
    let mut running = start.to_vec();
    let mut out = Vec::with_capacity(totals.len());
    for total in totals {
        out.push(running.clone());
        add_into(&mut running, total);
    }
    out
}

fn add_into<T: Element>(acc: &mut [T], x: &[T]) {
    acc.iter_mut().zip(x).for_each(|(a, &b)| *a += b);
}

/// Splits each head's output (`rows_per_head × d_v`) at the chunk boundaries:
/// `(head, chunk index, rows, output slice)` in (head, row) order.
pub(super) fn output_pieces<'o, T>(
    out: &'o mut [T],
    rows_per_head: usize,
    d_v: usize,
    ranges: &[Range<usize>],
) -> Vec<(usize, usize, Range<usize>, &'o mut [T])> {
    let mut pieces = Vec::new();
    for (bh, mut head_out) in out.chunks_mut(rows_per_head * d_v).enumerate() {
        for (c, range) in ranges.iter().enumerate() {
            let (piece, rest) = head_out.split_at_mut(range.len() * d_v);
            pieces.push((bh, c, range.clone(), piece));
            head_out = rest;
        }
    }
    pieces
}

/// The first error in (batch, head, row) order, if any.
fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect()
}

/// Key totals of every (key/value head, chunk), in order: in parallel over all of them. Keys
/// do not depend on the query head, so a group of query heads (grouped-query attention) shares
/// its totals: index them with [`Dims::kv_index`].
pub(super) fn all_totals<T: Element>(
    p: &Problem<'_, T>,
    ranges: &[Range<usize>],
) -> Vec<Vec<Vec<T>>> {
    let b = p.block();
    let kv_heads = p.dims.batch * p.dims.kv_heads;
    // The first query head of each group stands for the group's key side.
    let query_head =
        |kv: usize| (kv / p.dims.kv_heads) * p.dims.heads + (kv % p.dims.kv_heads) * p.dims.group();
    let tasks: Vec<(usize, Range<usize>)> = (0..kv_heads)
        .flat_map(|kv| ranges.iter().map(move |r| (query_head(kv), r.clone())))
        .collect();
    let flat: Vec<Vec<T>> = tasks
        .into_par_iter()
        .map(|(bh, range)| chunk_total(&p.head(bh), range, b, p.state_len()))
        .collect();
    let mut flat = flat.into_iter();
    (0..kv_heads)
        .map(|_| flat.by_ref().take(ranges.len()).collect())
        .collect()
}

/// Non-causal: every query reads `H = Σ_c T_c`, the key totals summed in chunk order.
pub(super) fn non_causal<T: Element>(p: &Problem<'_, T>, out: &mut [T]) -> Result<()> {
    let (b, len) = (p.block(), p.state_len());
    let key_ranges = chunks(p.dims.n_k, b);
    let states: Vec<Vec<T>> = all_totals(p, &key_ranges)
        .iter()
        .map(|totals| {
            let mut h = vec![T::ZERO; len];
            totals.iter().for_each(|t| add_into(&mut h, t));
            h
        })
        .collect();
    let query_ranges = chunks(p.dims.n_q, b);
    let results = output_pieces(out, p.dims.n_q, p.dims.d_v, &query_ranges)
        .into_par_iter()
        .map(|(bh, _, range, piece)| read_piece(p, bh, range, &states[p.dims.kv_index(bh)], piece))
        .collect();
    first_error(results)
}

/// Non-causal outputs of the query rows `range` of head `bh` from the state `state`.
pub(super) fn read_piece<T: Element>(
    p: &Problem<'_, T>,
    bh: usize,
    range: Range<usize>,
    state: &[T],
    piece: &mut [T],
) -> Result<()> {
    let b = p.block();
    let head = p.head(bh);
    let mut s = head.scratch(b);
    for (start, rows) in blocks(range.clone(), b) {
        head.query_block(start, rows, &mut s, state);
        let at = (start - range.start) * p.dims.d_v;
        head.read_state(start, rows, &mut s, state, &mut piece[at..])?;
    }
    Ok(())
}

/// Causal outputs of the rows `range` of head `bh`, the state of every earlier row being
/// `earlier`.
pub(super) fn causal_piece<T: Element>(
    p: &Problem<'_, T>,
    bh: usize,
    range: Range<usize>,
    earlier: &[T],
    piece: &mut [T],
) -> Result<()> {
    let head = p.head(bh);
    let mut s = head.scratch(p.block());
    let mut chunk_state = vec![T::ZERO; p.state_len()];
    causal_chunk(&head, range, earlier, &mut s, &mut chunk_state, piece)
}

/// The outputs of one chunk's blocks, starting from `S_c`.
fn causal_chunk<T: Element>(
    head: &Head<'_, T>,
    range: Range<usize>,
    earlier_chunks: &[T],
    s: &mut Scratch<T>,
    chunk_state: &mut [T],
    out: &mut [T],
) -> Result<()> {
    let b = head.cfg.block;
    let d_v = head.d_v;
    chunk_state.fill(T::ZERO);
    let mut z = vec![T::ZERO; chunk_state.len()];
    for (start, rows) in blocks(range.clone(), b) {
        for ((z, &s_c), &p) in z.iter_mut().zip(earlier_chunks).zip(chunk_state.iter()) {
            *z = s_c + p;
        }
        head.key_block(start, rows, s);
        head.query_block(start, rows, s, &z);
        let at = (start - range.start) * d_v;
        head.causal_block(start, rows, s, &z, &mut out[at..at + rows * d_v])?;
        head.absorb(rows, s, chunk_state);
    }
    Ok(())
}

/// Causal: the block lower-triangular product, sequential per head or two-pass across chunks.
pub(super) fn block_causal<T: Element>(p: &Problem<'_, T>, out: &mut [T]) -> Result<()> {
    let (b, len, n) = (p.block(), p.state_len(), p.dims.n_q);
    let ranges = chunks(n, b);
    let results: Vec<Result<()>> = if p.split_heads() {
        let prefixes: Vec<Vec<Vec<T>>> = all_totals(p, &ranges)
            .iter()
            .map(|totals| prefix_states(totals, len))
            .collect();
        output_pieces(out, n, p.dims.d_v, &ranges)
            .into_par_iter()
            .map(|(bh, c, range, piece)| {
                causal_piece(p, bh, range, &prefixes[p.dims.kv_index(bh)][c], piece)
            })
            .collect()
    } else {
        out.par_chunks_mut(n * p.dims.d_v)
            .enumerate()
            .map(|(bh, head_out)| {
                let head = p.head(bh);
                let mut s = head.scratch(b);
                let mut earlier = vec![T::ZERO; len];
                let mut chunk_state = vec![T::ZERO; len];
                let mut rest = head_out;
                for range in &ranges {
                    let (piece, tail) = rest.split_at_mut(range.len() * p.dims.d_v);
                    rest = tail;
                    causal_chunk(
                        &head,
                        range.clone(),
                        &earlier,
                        &mut s,
                        &mut chunk_state,
                        piece,
                    )?;
                    add_into(&mut earlier, &chunk_state);
                }
                Ok(())
            })
            .collect()
    };
    first_error(results)
}
