//! `attend --decode P`: the output of every token after a prompt of P, computed as a model
//! decodes: the prompt's keys and values enter a KV cache (exact kernels) or one decoding state
//! per k/v head (sketched kernels), then each later token is appended and attended alone. The
//! rows equal those of `attend --causal`; what differs is the cost per token.

use poly_core::{
    AttentionConfig, Dims, Element, Error, KvCache, Result, Tensor, Threads, run_with_threads,
};
use poly_sketch::{DecodingState, FeatureMap, LinearAttentionConfig};
use rayon::prelude::*;
use std::ops::Range;

/// Rows `rows` of every head of batch entry `batch` of `t` (`[heads, rows, width]`, contiguous).
fn token_rows<T: Element>(t: &Tensor<T>, batch: usize, rows: Range<usize>) -> Vec<T> {
    let [_, heads, n, width] = t.shape();
    let data = t.as_slice();
    let mut out = Vec::with_capacity(heads * rows.len() * width);
    for h in 0..heads {
        let head = (batch * heads + h) * n;
        out.extend_from_slice(&data[(head + rows.start) * width..(head + rows.end) * width]);
    }
    out
}

/// Moves a row error of one batch entry (or one k/v head's group) into the whole problem.
fn at_entry(e: Error, batch: usize, first_head: usize) -> Error {
    e.moved(|mut at| {
        at.batch = batch;
        at.head += first_head;
        at
    })
}

/// Exact decoding: one [`KvCache`] per batch entry, filled with the first `prompt` tokens; then
/// each token is appended and its queries (every head) attend over the cache. Output
/// `[batch, heads, n − prompt, d_v]`.
///
/// # Errors
/// The cache's errors (non-finite tokens are refused when they enter; the row errors of the
/// engine at the row that raises them).
pub fn decode_exact<T: Element>(
    [q, k, v]: [&Tensor<T>; 3],
    dims: &Dims,
    cfg: &AttentionConfig,
    prompt: usize,
) -> Result<Tensor<T>> {
    let (n, d_v) = (dims.n_k, dims.d_v);
    let mut out = Tensor::zeros([dims.batch, dims.heads, n - prompt, d_v])?;
    let decoded = n - prompt;
    for batch in 0..dims.batch {
        let mut cache = KvCache::new(cfg, dims.kv_heads, dims.d, d_v)?;
        cache.reserve(n)?;
        if prompt > 0 {
            cache.append(
                &token_rows(k, batch, 0..prompt),
                &token_rows(v, batch, 0..prompt),
            )?;
        }
        for i in prompt..n {
            let token = i..i + 1;
            cache.append(
                &token_rows(k, batch, token.clone()),
                &token_rows(v, batch, token.clone()),
            )?;
            let y = cache
                .attend(&token_rows(q, batch, token), dims.heads)
                .map_err(|e| at_entry(e, batch, 0))?;
            let entry = &mut out.as_mut_slice()[batch * dims.heads * decoded * d_v..];
            for (h, row) in y.as_slice().chunks_exact(d_v).enumerate() {
                let at = (h * decoded + i - prompt) * d_v;
                entry[at..at + d_v].copy_from_slice(row);
            }
        }
    }
    Ok(out)
}

/// Sketched decoding: one [`DecodingState`] per (batch entry, k/v head), prefilled with the first
/// `prompt` tokens and stepped with the queries of the k/v head's whole group; the states run in
/// parallel. Output `[batch, heads, n − prompt, d_v]`.
///
/// # Errors
/// The states' errors, at the row and head that raise them.
pub fn decode_sketched<T: Element>(
    [q, k, v]: [&Tensor<T>; 3],
    dims: &Dims,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
    prompt: usize,
    threads: Threads,
) -> Result<Tensor<T>> {
    let (n, d, d_v) = (dims.n_k, dims.d, dims.d_v);
    let (group, decoded) = (dims.heads / dims.kv_heads, n - prompt);
    let mut out = Tensor::zeros([dims.batch, dims.heads, decoded, d_v])?;
    let (qs, ks, vs) = (q.as_slice(), k.as_slice(), v.as_slice());
    run_with_threads(threads, || {
        // One chunk of the output per (batch entry, k/v head): its group's heads, `[g, decoded, d_v]`.
        out.as_mut_slice()
            .par_chunks_mut(group * decoded * d_v)
            .enumerate()
            .try_for_each(|(entry, group_out)| {
                let (batch, kv) = (entry / dims.kv_heads, entry % dims.kv_heads);
                let first_head = kv * group;
                let keys = &ks[entry * n * d..(entry + 1) * n * d];
                let values = &vs[entry * n * d_v..(entry + 1) * n * d_v];
                let mut state = DecodingState::new(map, d_v, cfg)?;
                state.prefill(&keys[..prompt * d], &values[..prompt * d_v])?;
                let (mut queries, mut y) = (vec![T::ZERO; group * d], vec![T::ZERO; group * d_v]);
                for i in prompt..n {
                    for (j, row) in queries.chunks_exact_mut(d).enumerate() {
                        let at = ((batch * dims.heads + first_head + j) * n + i) * d;
                        row.copy_from_slice(&qs[at..at + d]);
                    }
                    state
                        .step_into(
                            &queries,
                            &keys[i * d..(i + 1) * d],
                            &values[i * d_v..(i + 1) * d_v],
                            &mut y,
                        )
                        .map_err(|e| at_entry(e, batch, first_head))?;
                    for (j, row) in y.chunks_exact(d_v).enumerate() {
                        let at = (j * decoded + i - prompt) * d_v;
                        group_out[at..at + d_v].copy_from_slice(row);
                    }
                }
                Ok(())
            })
    })??;
    Ok(out)
}
