//! Gradients of linear attention with respect to q, k and v (docs/math.md §4.6), through the
//! block-causal scan and through each feature map that has a backward.
//!
//! With `Y_i = [Σ_j w_ij v_j | Σ_j w_ij]` and the output `O_i = Y_i[..d_v] / den_i`, the gradient
//! with respect to `Y_i` is `dY_i = [dO_i / den_i | −dO_i·O_i / den_i]` (no last column under
//! `None`). Non-causal, `Y = Φq S` with `S = Φkᵀ [V | 1]`, so `dΦq = dY Sᵀ`, `dS = Φqᵀ dY`,
//! `dΦk = [V | 1] dSᵀ`, `d[V | 1] = Φk dS`. Block-causal, block B's queries read the prefix state
//! `S_B` of the blocks before it plus a masked local product `L = tril(Φq_B Φk_Bᵀ)` (exact
//! `(q·k)^p` in the mixed variant); `Φq_Bᵀ dY_B` flows back to the keys of every earlier block,
//! which one reverse scan of those state gradients delivers. The maps then turn `dΦ` into `dq`,
//! `dk` ([`FeatureMap::backward_into`]); LayerNorm and the scale last.
//!
//! Work is split into blocks of `block` rows, run in parallel: key blocks' states, query blocks'
//! gradients (each also owns its keys' local terms), key blocks' state gradients; between them two
//! short scans sum the per-block states in block order, so results never depend on the thread
//! count. Features are recomputed per block and never held for the whole sequence; the per-block
//! states (`⌈n/block⌉ × m × (d_v + 1)`, twice) are the memory that grows with n.

use super::{LinearAttentionConfig, linear_attention};
use crate::SketchElement;
use crate::feature_map::FeatureMap;
use poly_core::primitives::{gemm_ab, gemm_abt, gemm_add_ab, gemm_add_atb, powi};
use poly_core::{
    AttentionGradients, Error, Mask, Normalization, Result, Tensor, TensorRef, check_elements,
    layernorm_backward, layernorm_rows, run_with_threads,
};
use rayon::prelude::*;

/// [`linear_attention`] and the gradients of `Σ grad_out ⊙ output` with respect to q, k and v.
///
/// # Errors
/// As [`linear_attention`] (the forward runs first, with its checks); a `grad_out` whose shape is
/// not the output's or that holds non-finite values; a map without a backward (a caller's own
/// map that does not implement [`FeatureMap::backward_into`]); a gradient that overflows.
pub fn linear_attention_backward<T: SketchElement>(
    q: TensorRef<'_, T>,
    k: TensorRef<'_, T>,
    v: TensorRef<'_, T>,
    grad_out: TensorRef<'_, T>,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> Result<(Tensor<T>, AttentionGradients<T>)> {
    let output = linear_attention(q, k, v, map, cfg)?;
    if !map.backward_into(&[], &[], &[], &mut []) {
        return Err(Error::InvalidParameter {
            name: "feature map",
            value: "a map without a backward".into(),
            expected: "a differentiable map (every map of this crate is)",
        });
    }
    poly_core::check_output_gradient(&grad_out, output.shape())?;
    let [batch, heads, n, d] = q.shape();
    let [_, kv_heads, n_k, d_v] = v.shape();
    let m = map.feature_dim();
    let block = cfg.block.min(n.max(n_k)).max(1);
    // Per task: the features of one query and one key head, their gradients, and (causal) the
    // prefix states and their gradients per block.
    check_elements("backward features", &[n.max(n_k), m, 4], size_of::<T>())?;
    if cfg.mask == Mask::Causal {
        check_elements(
            "backward block states",
            &[n.div_ceil(block), m, (d_v + 1) * 2],
            size_of::<T>(),
        )?;
    }
    // The prepared rows, as the forward prepares them: LayerNorm, then the scale (queries).
    let (q_norm, k_hat) = if cfg.layernorm {
        (
            layernorm_rows(q.as_slice(), d)?,
            layernorm_rows(k.as_slice(), d)?,
        )
    } else {
        (q.as_slice().to_vec(), k.as_slice().to_vec())
    };
    let scale = T::from_f64(cfg.scale.unwrap_or(1.0));
    let q_hat: Vec<T> = q_norm.iter().map(|&x| x * scale).collect();
    let job = Job {
        q: &q_hat,
        k: &k_hat,
        v: v.as_slice(),
        out: output.as_slice(),
        grad_out: grad_out.as_slice(),
        map,
        cfg,
        shape: [heads, kv_heads, n, n_k, d, d_v],
        block,
    };
    let tasks: Vec<(usize, usize)> = (0..batch)
        .flat_map(|b| (0..kv_heads).map(move |kv| (b, kv)))
        .collect();
    let parts: Vec<[Vec<T>; 3]> = run_with_threads(cfg.threads, || {
        tasks
            .into_par_iter()
            .map(|(b, kv)| job.task(b * kv_heads + kv))
            .collect()
    })?;
    let mut dq = Vec::with_capacity(batch * heads * n * d);
    let mut dk = Vec::with_capacity(batch * kv_heads * n_k * d);
    let mut dv = Vec::with_capacity(batch * kv_heads * n_k * d_v);
    for [q_part, k_part, v_part] in parts {
        dq.extend(q_part);
        dk.extend(k_part);
        dv.extend(v_part);
    }
    dq.iter_mut().for_each(|x| *x *= scale);
    if cfg.layernorm {
        layernorm_backward(q.as_slice(), &q_norm, &mut dq, d);
        layernorm_backward(k.as_slice(), &k_hat, &mut dk, d);
    }
    let grads = AttentionGradients {
        dq: Tensor::from_vec([batch, heads, n, d], dq)?,
        dk: Tensor::from_vec([batch, kv_heads, n_k, d], dk)?,
        dv: Tensor::from_vec([batch, kv_heads, n_k, d_v], dv)?,
    };
    grads.check_finite()?;
    Ok((output, grads))
}

/// What every task reads.
struct Job<'a, T: SketchElement> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    out: &'a [T],
    grad_out: &'a [T],
    map: &'a dyn FeatureMap<T>,
    cfg: &'a LinearAttentionConfig,
    /// heads, kv_heads, n_q, n_k, d, d_v.
    shape: [usize; 6],
    block: usize,
}

/// What one query block contributes: the group's dq rows (`[g, rows, d]`), the local part of the
/// block's dk and d[V | 1] rows, and the gradient of the state the block's queries read.
struct BlockGradients<T> {
    dq: Vec<T>,
    dk: Vec<T>,
    dv1: Vec<T>,
    d_state: Vec<T>,
}

impl<T: SketchElement> Job<'_, T> {
    /// The gradients of one k/v head (`entry` = batch · kv_heads + kv) and its group's query
    /// heads: `[dq̂ of the group, dk̂, dv]`. Blocks stream: features are recomputed per block,
    /// never held for the whole sequence, and blocks run in parallel between two short scans
    /// over per-block states (prefix states forward, state gradients backward).
    fn task(&self, entry: usize) -> [Vec<T>; 3] {
        let [heads, kv_heads, n, n_k, d, d_v] = self.shape;
        let (group, m, dv1, bs) = (
            heads / kv_heads,
            self.map.feature_dim(),
            d_v + 1,
            self.block,
        );
        let causal = self.cfg.mask == Mask::Causal;
        let keys = &self.k[entry * n_k * d..(entry + 1) * n_k * d];
        let values = &self.v[entry * n_k * d_v..(entry + 1) * n_k * d_v];
        let first = (entry / kv_heads) * heads + (entry % kv_heads) * group;
        let key_block = |b: usize| (b * bs, ((b + 1) * bs).min(n_k));
        let key_features = |(s, e): (usize, usize)| {
            let mut phi = vec![T::ZERO; (e - s) * m];
            self.map.map_keys_into(&keys[s * d..e * d], &mut phi);
            phi
        };
        let v1_rows = |(s, e): (usize, usize)| {
            let mut v1 = vec![T::ONE; (e - s) * dv1];
            for (row, v) in v1
                .chunks_exact_mut(dv1)
                .zip(values[s * d_v..e * d_v].chunks_exact(d_v))
            {
                row[..d_v].copy_from_slice(v);
            }
            v1
        };
        // Each key block's Φkᵀ [V | 1], summed in block order: prefix states (causal) or the total.
        let key_blocks = n_k.div_ceil(bs);
        let mut states: Vec<Vec<T>> = (0..key_blocks)
            .into_par_iter()
            .map(|b| {
                let range = key_block(b);
                let mut state = vec![T::ZERO; m * dv1];
                gemm_add_atb(
                    &mut state,
                    &key_features(range),
                    &v1_rows(range),
                    m,
                    dv1,
                    range.1 - range.0,
                );
                state
            })
            .collect();
        if causal {
            // states[b] becomes the prefix before block b.
            let mut running = vec![T::ZERO; m * dv1];
            for state in &mut states {
                std::mem::swap(state, &mut running);
                running
                    .iter_mut()
                    .zip(state.iter())
                    .for_each(|(r, &s)| *r += s);
            }
        } else {
            let total = states.iter().fold(vec![T::ZERO; m * dv1], |mut acc, s| {
                acc.iter_mut().zip(s).for_each(|(a, &b)| *a += b);
                acc
            });
            states = vec![total];
        }
        // Every query block, in parallel: its dq rows, its local key gradients, its state's.
        let query_blocks: Vec<BlockGradients<T>> = (0..n.div_ceil(bs))
            .into_par_iter()
            .map(|b| {
                let (s, e) = (b * bs, ((b + 1) * bs).min(n));
                let state = &states[if causal { b } else { 0 }];
                self.query_block(first, group, (s, e), state, keys, values, causal)
            })
            .collect();
        // State gradients reach the keys of every block the states summed: the later blocks'
        // (causal, by a reverse scan) or all of them.
        let mut reach: Vec<Vec<T>> = Vec::with_capacity(key_blocks);
        let mut later = vec![T::ZERO; m * dv1];
        if causal {
            for block in query_blocks.iter().rev() {
                reach.push(later.clone());
                later
                    .iter_mut()
                    .zip(&block.d_state)
                    .for_each(|(a, &b)| *a += b);
            }
            reach.reverse();
        } else {
            for block in &query_blocks {
                later
                    .iter_mut()
                    .zip(&block.d_state)
                    .for_each(|(a, &b)| *a += b);
            }
        }
        let key_parts: Vec<(Vec<T>, Vec<T>)> = (0..key_blocks)
            .into_par_iter()
            .map(|b| {
                let (s, e) = key_block(b);
                let rows = e - s;
                let state_grad = if causal { &reach[b] } else { &later };
                let (phi_k, v1) = (key_features((s, e)), v1_rows((s, e)));
                let mut d_phi_k = vec![T::ZERO; rows * m];
                gemm_abt(&mut d_phi_k, &v1, state_grad, rows, m, dv1, T::ONE);
                let mut dv1 = vec![T::ZERO; rows * dv1];
                gemm_ab(&mut dv1, &phi_k, state_grad, rows, d_v + 1, m);
                let mut dk = vec![T::ZERO; rows * d];
                self.map
                    .backward_into(&keys[s * d..e * d], &phi_k, &d_phi_k, &mut dk);
                (dk, dv1)
            })
            .collect();
        let mut d_queries = vec![T::ZERO; group * n * d];
        let mut d_keys = vec![T::ZERO; n_k * d];
        let mut d_v1 = vec![T::ZERO; n_k * dv1];
        for (b, part) in key_parts.into_iter().enumerate() {
            let (s, e) = key_block(b);
            d_keys[s * d..e * d].copy_from_slice(&part.0);
            d_v1[s * dv1..e * dv1].copy_from_slice(&part.1);
        }
        for (b, block) in query_blocks.into_iter().enumerate() {
            let (s, e) = (b * bs, ((b + 1) * bs).min(n));
            for g in 0..group {
                let rows = &block.dq[g * (e - s) * d..(g + 1) * (e - s) * d];
                d_queries[(g * n + s) * d..(g * n + e) * d].copy_from_slice(rows);
            }
            if causal {
                let add =
                    |dst: &mut [T], src: &[T]| dst.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
                add(&mut d_keys[s * d..e * d], &block.dk);
                add(&mut d_v1[s * dv1..e * dv1], &block.dv1);
            }
        }
        let d_values = d_v1
            .chunks_exact(dv1)
            .flat_map(|row| row[..d_v].iter().copied())
            .collect();
        [d_queries, d_keys, d_values]
    }

    /// Query rows `s..e` of the group's heads (from `first`) against `state` and, causal, the
    /// block's own keys.
    #[allow(clippy::too_many_arguments)]
    fn query_block(
        &self,
        first: usize,
        group: usize,
        (s, e): (usize, usize),
        state: &[T],
        keys: &[T],
        values: &[T],
        causal: bool,
    ) -> BlockGradients<T> {
        let [_, _, n, _, d, d_v] = self.shape;
        let (m, dv1, rows) = (self.map.feature_dim(), d_v + 1, e - s);
        // Causal blocks also need their own keys' features and values (the local product).
        let (mut phi_k, mut v1) = (Vec::new(), Vec::new());
        if causal {
            phi_k = vec![T::ZERO; rows * m];
            self.map.map_keys_into(&keys[s * d..e * d], &mut phi_k);
            v1 = vec![T::ONE; rows * dv1];
            for (row, v) in v1
                .chunks_exact_mut(dv1)
                .zip(values[s * d_v..e * d_v].chunks_exact(d_v))
            {
                row[..d_v].copy_from_slice(v);
            }
        }
        let mut out = BlockGradients {
            dq: vec![T::ZERO; group * rows * d],
            dk: vec![T::ZERO; if causal { rows * d } else { 0 }],
            dv1: vec![T::ZERO; if causal { rows * dv1 } else { 0 }],
            d_state: vec![T::ZERO; m * dv1],
        };
        let mut phi_q = vec![T::ZERO; rows * m];
        let mut d_phi_q = vec![T::ZERO; rows * m];
        let mut d_phi_k = vec![T::ZERO; if causal { rows * m } else { 0 }];
        let mut y = vec![T::ZERO; rows * dv1];
        for g in 0..group {
            let bh = first + g;
            let queries = &self.q[(bh * n + s) * d..(bh * n + e) * d];
            self.map.map_queries_into(queries, &mut phi_q);
            // Y = Φq S (+ L [V | 1]), then dY from the output and its gradient.
            gemm_ab(&mut y, &phi_q, state, rows, dv1, m);
            let local =
                causal.then(|| self.local_weights(&phi_q, &phi_k, queries, &keys[s * d..e * d]));
            if let Some(local) = &local {
                gemm_add_ab(&mut y, &local.weights, &v1, rows, dv1, rows);
            }
            self.output_gradient(bh, s, &mut y);
            // dΦq = dY Sᵀ; the state's gradient Φqᵀ dY goes to the keys the state summed.
            gemm_abt(&mut d_phi_q, &y, state, rows, m, dv1, T::ONE);
            gemm_add_atb(&mut out.d_state, &phi_q, &y, m, dv1, rows);
            let dq = &mut out.dq[g * rows * d..(g + 1) * rows * d];
            if let Some(local) = &local {
                // The local product: dL = tril(dY [V | 1]ᵀ), d[V | 1] += Lᵀ dY.
                let mut d_local = vec![T::ZERO; rows * rows];
                gemm_abt(&mut d_local, &y, &v1, rows, rows, dv1, T::ONE);
                mask_upper(&mut d_local, rows);
                gemm_add_atb(&mut out.dv1, &local.weights, &y, rows, dv1, rows);
                self.local_gradients(
                    &mut d_local,
                    local.slopes.as_deref(),
                    [&phi_q, &phi_k, queries, &keys[s * d..e * d]],
                    [&mut d_phi_q, &mut d_phi_k],
                    [&mut *dq, &mut out.dk],
                );
            }
            self.map.backward_into(queries, &phi_q, &d_phi_q, dq);
        }
        if causal {
            self.map
                .backward_into(&keys[s * d..e * d], &phi_k, &d_phi_k, &mut out.dk);
        }
        out
    }

    /// The causal local weights of a block (`rows × rows`, zero above the diagonal): feature
    /// products, or exact `(q·k)^p` in the mixed variant, which also keeps their slopes
    /// `p (q·k)^(p−1)` for the backward (from the same dot products).
    fn local_weights(&self, phi_q: &[T], phi_k: &[T], queries: &[T], keys: &[T]) -> Local<T> {
        let (m, d) = (self.map.feature_dim(), self.shape[4]);
        let rows = queries.len() / d;
        let mut weights = vec![T::ZERO; rows * rows];
        let slopes = if self.cfg.local_exact {
            gemm_abt(&mut weights, queries, keys, rows, rows, d, T::ONE);
            let degree = self
                .map
                .polynomial_degree()
                .expect("validated: a polynomial map");
            let p = T::from_f64(f64::from(degree));
            let slopes = weights.iter().map(|&x| p * powi(x, degree - 1)).collect();
            weights.iter_mut().for_each(|w| *w = powi(*w, degree));
            Some(slopes)
        } else {
            gemm_abt(&mut weights, phi_q, phi_k, rows, rows, m, T::ONE);
            None
        };
        mask_upper(&mut weights, rows);
        Local { weights, slopes }
    }

    /// Turns `d_local` (∂L/∂L_ij) into gradients: through the features (`dΦq += dL Φk`,
    /// `dΦk += dLᵀ Φq`) or, in the mixed variant (`slopes` given), straight into the prepared
    /// rows through `∂(q·k)^p = p (q·k)^(p−1)`.
    fn local_gradients(
        &self,
        d_local: &mut [T],
        slopes: Option<&[T]>,
        [phi_q, phi_k, queries, keys]: [&[T]; 4],
        [d_phi_q, d_phi_k]: [&mut [T]; 2],
        [d_q, d_k]: [&mut [T]; 2],
    ) {
        let (m, d) = (self.map.feature_dim(), self.shape[4]);
        let rows = queries.len() / d;
        match slopes {
            Some(slopes) => {
                d_local.iter_mut().zip(slopes).for_each(|(g, &s)| *g *= s);
                gemm_add_ab(d_q, d_local, keys, rows, d, rows);
                gemm_add_atb(d_k, d_local, queries, rows, d, rows);
            }
            None => {
                gemm_add_ab(d_phi_q, d_local, phi_k, rows, m, rows);
                gemm_add_atb(d_phi_k, d_local, phi_q, rows, m, rows);
            }
        }
    }

    /// Replaces the rows `y` (`[Σ w v | Σ w]` of query head `bh` from row `s`) by their gradient
    /// `[dO / den | −dO·O / den]`, with the forward's output `O`.
    fn output_gradient(&self, bh: usize, s: usize, y: &mut [T]) {
        let [_, _, n, _, _, d_v] = self.shape;
        let dv1 = d_v + 1;
        for (r, row) in y.chunks_exact_mut(dv1).enumerate() {
            let at = (bh * n + s + r) * d_v;
            let (out, go) = (&self.out[at..at + d_v], &self.grad_out[at..at + d_v]);
            let den = match self.cfg.normalization {
                Normalization::None => None,
                Normalization::OnePlusSum(c) => Some(c + row[d_v].to_f64()),
                _ => Some(row[d_v].to_f64()),
            };
            match den {
                None => {
                    row[..d_v].copy_from_slice(go);
                    row[d_v] = T::ZERO;
                }
                Some(den) => {
                    let delta: f64 = out
                        .iter()
                        .zip(go)
                        .map(|(o, g)| o.to_f64() * g.to_f64())
                        .sum();
                    for (y, &g) in row[..d_v].iter_mut().zip(go) {
                        *y = T::from_f64(g.to_f64() / den);
                    }
                    row[d_v] = T::from_f64(-delta / den);
                }
            }
        }
    }
}

/// A causal block's local weights and, in the mixed variant, their slopes.
struct Local<T> {
    weights: Vec<T>,
    slopes: Option<Vec<T>>,
}

/// Zeroes the entries above the diagonal of a square `rows × rows` matrix.
fn mask_upper<T: SketchElement>(a: &mut [T], rows: usize) {
    for (i, row) in a.chunks_exact_mut(rows).enumerate() {
        row[i + 1..].fill(T::ZERO);
    }
}
