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
//! Each (batch entry, k/v head) is one task over its group's query heads, so results never depend
//! on the thread count. Features are kept for one head at a time (`n × m`: O(n) memory).

use super::{LinearAttentionConfig, linear_attention};
use crate::SketchElement;
use crate::feature_map::FeatureMap;
use poly_core::primitives::{gemm_ab, gemm_abt, gemm_add_ab, gemm_add_atb, powi};
use poly_core::{
    AttentionGradients, Error, Mask, Normalization, Result, Tensor, TensorName, TensorRef,
    check_elements, layernorm_backward, layernorm_rows, run_with_threads,
};
use rayon::prelude::*;

/// [`linear_attention`] and the gradients of `Σ grad_out ⊙ output` with respect to q, k and v.
///
/// # Errors
/// As [`linear_attention`] (the forward runs first, with its checks); a `grad_out` whose shape is
/// not the output's or that holds non-finite values; a map without a backward (TensorSketch); a
/// gradient that overflows.
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
            value: "a map without a backward (TensorSketch)".into(),
            expected: "a differentiable map: PolySketch, self-tensored, Random Maclaurin, exact \
                       degree 2 or FAVOR+",
        });
    }
    let shape = output.shape();
    for (axis, (&want, found)) in shape.iter().zip(grad_out.shape()).enumerate() {
        if want != found {
            return Err(Error::ShapeMismatch {
                tensor: TensorName::Output,
                axis: ["batch", "heads", "n_q", "d_v"][axis],
                expected: want,
                found,
            });
        }
    }
    if let Some(flat) = poly_core::primitives::first_non_finite(grad_out.as_slice()) {
        return Err(Error::NonFinite {
            tensor: TensorName::Output,
            index: poly_core::unravel(shape, flat),
            value: grad_out.as_slice()[flat].to_f64(),
        });
    }
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
    for t in [&grads.dq, &grads.dk, &grads.dv] {
        if let Some(flat) = poly_core::primitives::first_non_finite(t.as_slice()) {
            let [b, h, row, _] = poly_core::unravel(t.shape(), flat);
            return Err(Error::Overflow {
                at: poly_core::RowPosition::new(b, h, row),
                what: "a gradient",
            });
        }
    }
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

impl<T: SketchElement> Job<'_, T> {
    /// The gradients of one k/v head (`entry` = batch · kv_heads + kv) and its group's query
    /// heads: `[dq̂ of the group, dk̂, dv]`.
    fn task(&self, entry: usize) -> [Vec<T>; 3] {
        let [heads, kv_heads, n, n_k, d, d_v] = self.shape;
        let (group, m, dv1) = (heads / kv_heads, self.map.feature_dim(), d_v + 1);
        let keys = &self.k[entry * n_k * d..(entry + 1) * n_k * d];
        let values = &self.v[entry * n_k * d_v..(entry + 1) * n_k * d_v];
        let mut phi_k = vec![T::ZERO; n_k * m];
        self.map.map_keys_into(keys, &mut phi_k);
        let mut v1 = vec![T::ONE; n_k * dv1];
        for (row, v) in v1.chunks_exact_mut(dv1).zip(values.chunks_exact(d_v)) {
            row[..d_v].copy_from_slice(v);
        }
        let mut d_phi_k = vec![T::ZERO; n_k * m];
        let mut d_v1 = vec![T::ZERO; n_k * dv1];
        let mut d_keys = vec![T::ZERO; n_k * d];
        let mut d_queries = vec![T::ZERO; group * n * d];
        let mut phi_q = vec![T::ZERO; n * m];
        let mut d_phi_q = vec![T::ZERO; n * m];
        let mut d_y = vec![T::ZERO; n * dv1];
        // The first query head of the group, in (batch · heads) order.
        let first = (entry / kv_heads) * heads + (entry % kv_heads) * group;
        match self.cfg.mask {
            Mask::Causal => {
                let blocks = n.div_ceil(self.block);
                // Prefix states: states[B] = Σ over the blocks before B of Φkᵀ [V | 1].
                let mut states = vec![T::ZERO; (blocks + 1) * m * dv1];
                for b in 0..blocks {
                    let (s, e) = (b * self.block, ((b + 1) * self.block).min(n));
                    let (done, next) = states.split_at_mut((b + 1) * m * dv1);
                    let next = &mut next[..m * dv1];
                    next.copy_from_slice(&done[b * m * dv1..]);
                    gemm_add_atb(
                        next,
                        &phi_k[s * m..e * m],
                        &v1[s * dv1..e * dv1],
                        m,
                        dv1,
                        e - s,
                    );
                }
                let mut d_states = vec![T::ZERO; blocks * m * dv1];
                for g in 0..group {
                    let bh = first + g;
                    let queries = &self.q[bh * n * d..(bh + 1) * n * d];
                    self.map.map_queries_into(queries, &mut phi_q);
                    d_phi_q.fill(T::ZERO);
                    for b in 0..blocks {
                        let (s, e) = (b * self.block, ((b + 1) * self.block).min(n));
                        let state = &states[b * m * dv1..(b + 1) * m * dv1];
                        let local = self.local_weights(&phi_q, &phi_k, queries, keys, s, e);
                        // Y = Φq S_B + L [V | 1], then dY from the output and its gradient.
                        let rows = e - s;
                        let y = &mut d_y[s * dv1..e * dv1];
                        gemm_ab(y, &phi_q[s * m..e * m], state, rows, dv1, m);
                        gemm_add_ab(y, &local, &v1[s * dv1..e * dv1], rows, dv1, rows);
                        self.output_gradient(bh, s, y);
                        let dy = &d_y[s * dv1..e * dv1];
                        // dΦq_B = dY S_Bᵀ; the state's gradient Φq_Bᵀ dY goes to earlier keys.
                        gemm_abt(&mut d_phi_q[s * m..e * m], dy, state, rows, m, dv1, T::ONE);
                        gemm_add_atb(
                            &mut d_states[b * m * dv1..(b + 1) * m * dv1],
                            &phi_q[s * m..e * m],
                            dy,
                            m,
                            dv1,
                            rows,
                        );
                        // The local product: dL = tril(dY [V | 1]ᵀ), d[V | 1] += Lᵀ dY.
                        let mut d_local = vec![T::ZERO; rows * rows];
                        gemm_abt(
                            &mut d_local,
                            dy,
                            &v1[s * dv1..e * dv1],
                            rows,
                            rows,
                            dv1,
                            T::ONE,
                        );
                        mask_upper(&mut d_local, rows);
                        gemm_add_atb(&mut d_v1[s * dv1..e * dv1], &local, dy, rows, dv1, rows);
                        let d_q = &mut d_queries[(g * n + s) * d..(g * n + e) * d];
                        self.local_gradients(
                            &mut d_local,
                            [&phi_q[..], &phi_k[..], queries, keys],
                            [&mut d_phi_q[..], &mut d_phi_k[..]],
                            [d_q, &mut d_keys[s * d..e * d]],
                            (s, e),
                        );
                    }
                    self.map.backward_into(
                        queries,
                        &phi_q,
                        &d_phi_q,
                        &mut d_queries[g * n * d..(g + 1) * n * d],
                    );
                }
                // Keys of block B receive the state gradients of every later block.
                let mut later = vec![T::ZERO; m * dv1];
                for b in (0..blocks).rev() {
                    let (s, e) = (b * self.block, ((b + 1) * self.block).min(n));
                    let rows = e - s;
                    gemm_abt(
                        &mut d_phi_q[..rows * m],
                        &v1[s * dv1..e * dv1],
                        &later,
                        rows,
                        m,
                        dv1,
                        T::ONE,
                    );
                    d_phi_k[s * m..e * m]
                        .iter_mut()
                        .zip(&d_phi_q[..rows * m])
                        .for_each(|(a, &b)| *a += b);
                    gemm_add_ab(
                        &mut d_v1[s * dv1..e * dv1],
                        &phi_k[s * m..e * m],
                        &later,
                        rows,
                        dv1,
                        m,
                    );
                    later
                        .iter_mut()
                        .zip(&d_states[b * m * dv1..(b + 1) * m * dv1])
                        .for_each(|(a, &b)| *a += b);
                }
            }
            _ => {
                let mut state = vec![T::ZERO; m * dv1];
                gemm_add_atb(&mut state, &phi_k, &v1, m, dv1, n_k);
                let mut d_state = vec![T::ZERO; m * dv1];
                for g in 0..group {
                    let bh = first + g;
                    let queries = &self.q[bh * n * d..(bh + 1) * n * d];
                    self.map.map_queries_into(queries, &mut phi_q);
                    gemm_ab(&mut d_y, &phi_q, &state, n, dv1, m);
                    self.output_gradient(bh, 0, &mut d_y);
                    gemm_abt(&mut d_phi_q, &d_y, &state, n, m, dv1, T::ONE);
                    gemm_add_atb(&mut d_state, &phi_q, &d_y, m, dv1, n);
                    self.map.backward_into(
                        queries,
                        &phi_q,
                        &d_phi_q,
                        &mut d_queries[g * n * d..(g + 1) * n * d],
                    );
                }
                gemm_abt(&mut d_phi_k, &v1, &d_state, n_k, m, dv1, T::ONE);
                gemm_ab(&mut d_v1, &phi_k, &d_state, n_k, dv1, m);
            }
        }
        self.map.backward_into(keys, &phi_k, &d_phi_k, &mut d_keys);
        let d_values = d_v1
            .chunks_exact(dv1)
            .flat_map(|row| row[..d_v].iter().copied())
            .collect();
        [d_queries, d_keys, d_values]
    }

    /// The causal local weights of rows `s..e` against keys `s..e` (`rows × rows`, zero above the
    /// diagonal): feature products, or exact `(q·k)^p` in the mixed variant.
    fn local_weights(
        &self,
        phi_q: &[T],
        phi_k: &[T],
        queries: &[T],
        keys: &[T],
        s: usize,
        e: usize,
    ) -> Vec<T> {
        let (rows, m, d) = (e - s, self.map.feature_dim(), self.shape[4]);
        let mut local = vec![T::ZERO; rows * rows];
        if self.cfg.local_exact {
            gemm_abt(
                &mut local,
                &queries[s * d..e * d],
                &keys[s * d..e * d],
                rows,
                rows,
                d,
                T::ONE,
            );
            let degree = self
                .map
                .polynomial_degree()
                .expect("validated: a polynomial map");
            local.iter_mut().for_each(|w| *w = powi(*w, degree));
        } else {
            gemm_abt(
                &mut local,
                &phi_q[s * m..e * m],
                &phi_k[s * m..e * m],
                rows,
                rows,
                m,
                T::ONE,
            );
        }
        mask_upper(&mut local, rows);
        local
    }

    /// Turns `d_local` (∂L/∂L_ij) into gradients: through the features (`dΦq += dL Φk`,
    /// `dΦk += dLᵀ Φq`) or, in the mixed variant, straight into the prepared rows through
    /// `∂(q·k)^p = p (q·k)^(p−1)`.
    fn local_gradients(
        &self,
        d_local: &mut [T],
        [phi_q, phi_k, queries, keys]: [&[T]; 4],
        [d_phi_q, d_phi_k]: [&mut [T]; 2],
        [d_q, d_k]: [&mut [T]; 2],
        (s, e): (usize, usize),
    ) {
        let (rows, m, d) = (e - s, self.map.feature_dim(), self.shape[4]);
        if self.cfg.local_exact {
            let degree = self
                .map
                .polynomial_degree()
                .expect("validated: a polynomial map");
            let mut dots = vec![T::ZERO; rows * rows];
            gemm_abt(
                &mut dots,
                &queries[s * d..e * d],
                &keys[s * d..e * d],
                rows,
                rows,
                d,
                T::ONE,
            );
            let p = T::from_f64(f64::from(degree));
            for (g, &x) in d_local.iter_mut().zip(&dots) {
                *g *= p * powi(x, degree - 1);
            }
            gemm_add_ab(d_q, d_local, &keys[s * d..e * d], rows, d, rows);
            gemm_add_atb(d_k, d_local, &queries[s * d..e * d], rows, d, rows);
        } else {
            gemm_add_ab(
                &mut d_phi_q[s * m..e * m],
                d_local,
                &phi_k[s * m..e * m],
                rows,
                m,
                rows,
            );
            gemm_add_atb(
                &mut d_phi_k[s * m..e * m],
                d_local,
                &phi_q[s * m..e * m],
                rows,
                m,
                rows,
            );
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

/// Zeroes the entries above the diagonal of a square `rows × rows` matrix.
fn mask_upper<T: SketchElement>(a: &mut [T], rows: usize) {
    for (i, row) in a.chunks_exact_mut(rows).enumerate() {
        row[i + 1..].fill(T::ZERO);
    }
}
