//! Token-by-token decoding (docs/math.md §4.4): the state after t tokens is
//! `Z_t = Σ_{j≤t} φ(k_j) [v_j | 1]ᵀ` (`m × (d_v+1)`); the output of token t is `φ(q_t)ᵀ Z_t`,
//! normalized by its last column. Each step costs `O(m·d_v)` plus one feature map, whatever t.
//!
//! The state follows the engine's configuration: LayerNorm and scale are applied to each token as
//! [`crate::linear_attention`] applies them, and the mixed variant keeps the raw keys and values of
//! the current partial block (exact `(q·k)^p` weights) and folds them into `Z` when the block
//! closes, so decoding reproduces the block-causal engine at every position.

use crate::feature_map::{FeatureMap, check_finite};
use crate::linear::{LinearAttentionConfig, normalize_row};
use poly_core::primitives::{add_row_dots, powi, rank_one_update, weighted_row_sum};
use poly_core::{
    Element, Error, Normalization, Result, RowPosition, check_elements, layernorm_in_place,
};
use std::sync::Arc;

/// The map a state decodes with: borrowed from the caller, or shared (for owners such as the
/// Python binding, where a state cannot borrow from another object).
#[derive(Clone)]
enum MapHandle<'m, T: Element> {
    Borrowed(&'m dyn FeatureMap<T>),
    Shared(Arc<dyn FeatureMap<T>>),
}

impl<'m, T: Element> std::ops::Deref for MapHandle<'m, T> {
    type Target = dyn FeatureMap<T> + 'm;
    fn deref(&self) -> &Self::Target {
        match self {
            MapHandle::Borrowed(map) => *map,
            MapHandle::Shared(map) => map.as_ref(),
        }
    }
}

/// The running state of one head, bound to the feature map it was built with.
///
/// # Example
/// Decoding reproduces the block-causal engine token by token:
/// ```
/// use poly_core::{Mask, Tensor};
/// use poly_sketch::{DecodingState, LinearAttentionConfig, PolySketch, SketchScale, linear_attention};
/// let (n, d) = (6, 4);
/// let data: Vec<f64> = (0..n * d).map(|i| ((i * 5) % 9) as f64 / 9.0 - 0.3).collect();
/// let x = Tensor::from_vec([1, 1, n, d], data.clone())?;
/// let phi = PolySketch::<f64>::new(d, 2, 16, 7, SketchScale::Unbiased)?;
/// let cfg = LinearAttentionConfig::default().with_mask(Mask::Causal).with_block(4);
/// let engine = linear_attention(x.view(), x.view(), x.view(), &phi, &cfg)?;
/// let mut state = DecodingState::new(&phi, d, &cfg)?;
/// state.prefill(&data[..(n - 1) * d], &data[..(n - 1) * d])?;
/// let last = &data[(n - 1) * d..];
/// let y = state.step(last, last, last)?;
/// for (a, b) in y.iter().zip(&engine.as_slice()[(n - 1) * d..]) {
///     assert!((a - b).abs() < 1e-9);
/// }
/// # Ok::<(), poly_core::Error>(())
/// ```
#[derive(Clone)]
pub struct DecodingState<'m, T: Element> {
    map: MapHandle<'m, T>,
    d: usize,
    d_v: usize,
    m: usize,
    /// `Z_v` (`m × d_v`, row-major), then `z = Σ φ(k)` (`m`): the engine's layout.
    state: Vec<T>,
    /// `u = Σ_j |φ(k_j)|` over the absorbed keys (`m`): the normalizer's terms are bounded by it,
    /// so a step judges its normalizer by the engine's rule.
    key_magnitudes: Vec<T>,
    tokens: usize,
    normalization: Normalization,
    layernorm: bool,
    scale: Option<T>,
    /// The mixed variant: exact weights of this degree inside blocks of `block` tokens.
    local: Option<(u32, usize)>,
    /// Prepared keys and `[v | 1]` rows of the current partial block (mixed variant only).
    partial_keys: Vec<T>,
    partial_values: Vec<T>,
    /// One token's prepared query (or prefill key) and its features, reused by every step.
    x: Vec<T>,
    features: Vec<T>,
    /// The stepped token's prepared key and features, held until the step succeeds.
    key: Vec<T>,
    key_features: Vec<T>,
    y: Vec<T>,
    /// `[v | 1]` of the token being absorbed.
    c: Vec<T>,
}

impl<T: Element> DecodingState<'static, T> {
    /// [`DecodingState::new`] with a map the state shares ownership of, for owners that cannot
    /// lend it (a Python object, a state sent elsewhere).
    ///
    /// # Errors
    /// As [`DecodingState::new`].
    pub fn new_shared(
        map: Arc<dyn FeatureMap<T>>,
        d_v: usize,
        cfg: &LinearAttentionConfig,
    ) -> Result<Self> {
        Self::with_handle(MapHandle::Shared(map), d_v, cfg)
    }
}

impl<'m, T: Element> DecodingState<'m, T> {
    /// An empty state for values of dimension `d_v`, with the normalization, LayerNorm, scale and
    /// mixed variant of `cfg` (its mask, block size when not mixed, and threads do not apply).
    ///
    /// # Errors
    /// `d_v = 0`; the mixed variant with a non-polynomial map or block 0; a map that needs `Sum`
    /// normalization under another one.
    pub fn new(
        map: &'m dyn FeatureMap<T>,
        d_v: usize,
        cfg: &LinearAttentionConfig,
    ) -> Result<Self> {
        Self::with_handle(MapHandle::Borrowed(map), d_v, cfg)
    }

    fn with_handle(map: MapHandle<'m, T>, d_v: usize, cfg: &LinearAttentionConfig) -> Result<Self> {
        let invalid = |name, value: String, expected| Error::InvalidParameter {
            name,
            value,
            expected,
        };
        if d_v == 0 {
            return Err(invalid("d_v", "0".into(), "a value dimension ≥ 1"));
        }
        let local = if cfg.local_exact {
            let degree = map.polynomial_degree().ok_or_else(|| {
                invalid(
                    "local-exact",
                    "a map of a non-polynomial kernel".into(),
                    "a polynomial feature map",
                )
            })?;
            if cfg.block == 0 {
                return Err(invalid("block", "0".into(), "a block size ≥ 1"));
            }
            Some((degree, cfg.block))
        } else {
            None
        };
        if map.requires_sum_normalization() && cfg.normalization != Normalization::Sum {
            return Err(invalid(
                "normalization",
                format!("{:?}", cfg.normalization),
                "Sum: this map rescales query rows, which only Sum normalization cancels",
            ));
        }
        let (d, m) = (map.input_dim(), map.feature_dim());
        let width = d_v.checked_add(1).ok_or(Error::ResourceLimit {
            what: "decoding state",
            needed_bytes: u64::MAX,
            limit_bytes: poly_core::memory_budget(),
        })?;
        check_elements("decoding state", &[m, width, 2], size_of::<T>())?;
        Ok(DecodingState {
            map,
            d,
            d_v,
            m,
            state: vec![T::ZERO; m * (d_v + 1)],
            key_magnitudes: vec![T::ZERO; m],
            tokens: 0,
            normalization: cfg.normalization,
            layernorm: cfg.layernorm,
            scale: cfg.scale.map(T::from_f64),
            local,
            partial_keys: Vec::new(),
            partial_values: Vec::new(),
            x: vec![T::ZERO; d],
            key: vec![T::ZERO; d],
            features: vec![T::ZERO; m],
            key_features: vec![T::ZERO; m],
            y: vec![T::ZERO; d_v + 1],
            c: {
                let mut c = vec![T::ZERO; d_v + 1];
                c[d_v] = T::ONE;
                c
            },
        })
    }

    /// Tokens absorbed so far.
    pub fn len(&self) -> usize {
        self.tokens
    }

    /// Whether no token has been absorbed yet.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Absorbs the keys and values of a prompt (`rows × d` and `rows × d_v`).
    ///
    /// # Errors
    /// Lengths that are not whole rows of the same count; non-finite values (which would poison
    /// the state for good).
    pub fn prefill(&mut self, k: &[T], v: &[T]) -> Result<()> {
        let rows = k.len() / self.d;
        if !k.len().is_multiple_of(self.d) || v.len() != rows * self.d_v {
            return Err(Error::InvalidParameter {
                name: "decoding input",
                value: format!("{} key values, {} value values", k.len(), v.len()),
                expected: "whole rows: rows × d keys and rows × d_v values",
            });
        }
        check_finite(k, self.d, "decoding key")?;
        check_finite(v, self.d_v, "decoding value")?;
        for (k, v) in k.chunks_exact(self.d).zip(v.chunks_exact(self.d_v)) {
            self.load_key(k, v);
            self.commit();
        }
        Ok(())
    }

    /// Absorbs one token's `k`, `v` and returns the output for its query `q`.
    ///
    /// Under grouped-query attention one state holds one k/v head and `q` holds the new token's
    /// query rows of every query head in its group (`g × d`, output `g × d_v`): the state is
    /// built once and read by all of them, as the engine reads a shared k/v head.
    ///
    /// # Errors
    /// Wrong lengths; non-finite inputs; a zero normalizer; a non-finite output.
    pub fn step(&mut self, q: &[T], k: &[T], v: &[T]) -> Result<Vec<T>> {
        let mut out = vec![T::ZERO; (q.len() / self.d) * self.d_v];
        self.step_into(q, k, v, &mut out)?;
        Ok(out)
    }

    /// [`DecodingState::step`] into a caller's buffer of `g × d_v` values. The state's own buffers
    /// are reused; only the feature map's scratch (a few vectors of length r) is allocated per
    /// call.
    ///
    /// # Errors
    /// As [`DecodingState::step`].
    pub fn step_into(&mut self, q: &[T], k: &[T], v: &[T], out: &mut [T]) -> Result<()> {
        let g = q.len() / self.d;
        let whole_rows = q.len() == g * self.d && g >= 1;
        if !whole_rows || k.len() != self.d || v.len() != self.d_v || out.len() != g * self.d_v {
            return Err(Error::InvalidParameter {
                name: "decoding step",
                value: format!(
                    "q: {}, k: {}, v: {}, out: {} values",
                    q.len(),
                    k.len(),
                    v.len(),
                    out.len()
                ),
                expected: "q of g ≥ 1 rows of d, k of length d, v of d_v, out of g × d_v",
            });
        }
        check_finite(q, self.d, "decoding query")?;
        check_finite(k, self.d, "decoding key")?;
        check_finite(v, self.d_v, "decoding value")?;
        // Transactional: the outputs are computed from the state *plus* the new token without
        // changing either; only a step that succeeds for every query row absorbs its token.
        self.load_key(k, v);
        for (head, (q, out)) in q
            .chunks_exact(self.d)
            .zip(out.chunks_exact_mut(self.d_v))
            .enumerate()
        {
            self.read_row(q, out, head)?;
        }
        self.commit();
        Ok(())
    }

    /// Starts the next sequence: the state forgets every absorbed token (packed sequences
    /// decode one after another on one state, as the engine restarts at each boundary).
    pub fn reset(&mut self) {
        self.state.fill(T::ZERO);
        self.key_magnitudes.fill(T::ZERO);
        self.partial_keys.clear();
        self.partial_values.clear();
        self.tokens = 0;
    }

    /// The output of one query row (of query head `head` of the group) over the absorbed tokens
    /// plus the loaded one.
    fn read_row(&mut self, q: &[T], out: &mut [T], head: usize) -> Result<()> {
        self.prepare(q, true);
        self.map.map_queries_into(&self.x, &mut self.features);
        let (z_v, z) = self.state.split_at(self.m * self.d_v);
        let (y_v, y_sum) = self.y.split_at_mut(self.d_v);
        weighted_row_sum(y_v, &self.features, z_v);
        y_sum[0] = T::ZERO;
        add_row_dots(y_sum, &self.features, z);
        // ⟨|φ(q)|, u⟩, plus the new token's terms below: the magnitude the normalizer is judged by.
        let mut magnitude = abs_dot(&self.features, &self.key_magnitudes);
        match self.local {
            None => {
                let s = dot(&self.features, &self.key_features);
                axpy(&mut self.y, s, &self.c);
                magnitude += abs_dot(&self.features, &self.key_features);
            }
            Some((degree, _)) => {
                // Local tokens (mixed variant) stay raw until their block closes.
                let key_rows = self.partial_keys.chunks_exact(self.d);
                let keys = key_rows.chain(std::iter::once(&self.key[..]));
                let values = self.partial_values.chunks_exact(self.d_v + 1);
                for (key, c) in keys.zip(values.chain(std::iter::once(&self.c[..]))) {
                    let w = powi(dot(&self.x, key), degree);
                    axpy(&mut self.y, w, c);
                    magnitude += w.to_f64().abs();
                }
            }
        }
        if self.map.nonnegative_weights() {
            // Weights that cannot cancel: only a zero normalizer is refused.
            magnitude = self.y[self.d_v].to_f64().abs();
        }
        let at = RowPosition::new(0, head, self.tokens);
        let (num, sum) = self.y.split_at(self.d_v);
        normalize_row(num, sum[0], self.normalization, magnitude, at, out)
    }

    /// Applies LayerNorm (and the scale, for queries) to one row into `self.x`.
    fn prepare(&mut self, row: &[T], is_query: bool) {
        self.x.copy_from_slice(row);
        if self.layernorm {
            layernorm_in_place(&mut self.x, self.d)
                .expect("one row of the validated dimension d ≥ 1");
        }
        if let (true, Some(s)) = (is_query, self.scale) {
            self.x.iter_mut().for_each(|x| *x *= s);
        }
    }

    /// Prepares one token: its key into `self.key`, `[v | 1]` into `self.c` and, unless mixed,
    /// the key's features into `self.key_features`. Changes nothing that [`Self::commit`] owns.
    fn load_key(&mut self, k: &[T], v: &[T]) {
        self.prepare(k, false);
        std::mem::swap(&mut self.x, &mut self.key);
        self.c[..self.d_v].copy_from_slice(v);
        if self.local.is_none() {
            self.map.map_keys_into(&self.key, &mut self.key_features);
        }
    }

    /// Absorbs the loaded token: into `Z`, or (mixed variant) into the partial block, which is
    /// folded into `Z` when it is full.
    fn commit(&mut self) {
        self.tokens += 1;
        match self.local {
            None => {
                absorb_token(&mut self.state, &self.key_features, &self.c);
                add_magnitudes(&mut self.key_magnitudes, &self.key_features);
            }
            Some((_, block)) => {
                self.partial_keys.extend_from_slice(&self.key);
                self.partial_values.extend_from_slice(&self.c);
                if self.tokens.is_multiple_of(block) {
                    self.fold_partial();
                }
            }
        }
    }

    /// Moves the closed partial block into `Z`.
    fn fold_partial(&mut self) {
        let keys = std::mem::take(&mut self.partial_keys);
        let values = std::mem::take(&mut self.partial_values);
        for (k, c) in keys
            .chunks_exact(self.d)
            .zip(values.chunks_exact(self.d_v + 1))
        {
            self.map.map_keys_into(k, &mut self.features);
            absorb_token(&mut self.state, &self.features, c);
            add_magnitudes(&mut self.key_magnitudes, &self.features);
        }
        self.partial_keys = keys;
        self.partial_keys.clear();
        self.partial_values = values;
        self.partial_values.clear();
    }

    /// Everything this state has absorbed, to send elsewhere (see [`DecodingSnapshot`]).
    pub fn snapshot(&self) -> DecodingSnapshot<T> {
        let mut state = self.state.clone();
        state.extend_from_slice(&self.key_magnitudes);
        DecodingSnapshot {
            tokens: self.tokens,
            d: self.d,
            d_v: self.d_v,
            m: self.m,
            map_fingerprint: map_fingerprint(&*self.map),
            state,
            partial_keys: self.partial_keys.clone(),
            partial_values: self.partial_values.clone(),
        }
    }

    /// Replaces what this state has absorbed by `snapshot` (taken from a state of the same map,
    /// widths and configuration, here or in another process).
    ///
    /// # Errors
    /// A snapshot of other dimensions or of another map (by its fingerprint), lengths that do not
    /// agree with its token count and block, or non-finite values. On an error nothing changes.
    pub fn restore(&mut self, snapshot: &DecodingSnapshot<T>) -> Result<()> {
        let s = snapshot;
        let partial = match self.local {
            Some((_, block)) => s.tokens % block,
            None => 0,
        };
        let consistent = s.d == self.d
            && s.d_v == self.d_v
            && s.m == self.m
            && s.map_fingerprint == map_fingerprint(&*self.map)
            && s.state.len() == self.m * (self.d_v + 2)
            && s.partial_keys.len() == partial * self.d
            && s.partial_values.len() == partial * (self.d_v + 1);
        if !consistent {
            return Err(Error::InvalidParameter {
                name: "decoding snapshot",
                value: format!(
                    "{} tokens, d {}, d_v {}, m {}, {} state values, {} partial keys",
                    s.tokens,
                    s.d,
                    s.d_v,
                    s.m,
                    s.state.len(),
                    s.partial_keys.len() / self.d.max(1)
                ),
                expected: "a snapshot of a state with the same feature map, d, d_v and block",
            });
        }
        for data in [&s.state, &s.partial_keys, &s.partial_values] {
            if let Some(i) = poly_core::primitives::first_non_finite(data) {
                return Err(Error::InvalidParameter {
                    name: "decoding snapshot",
                    value: format!("the non-finite value {} at {i}", data[i].to_f64()),
                    expected: "finite state values",
                });
            }
        }
        let (z, u) = s.state.split_at(self.m * (self.d_v + 1));
        self.state.copy_from_slice(z);
        self.key_magnitudes.copy_from_slice(u);
        self.partial_keys.clone_from(&s.partial_keys);
        self.partial_values.clone_from(&s.partial_values);
        self.tokens = s.tokens;
        Ok(())
    }

    /// Feature dimension `m` of the state.
    pub fn feature_dim(&self) -> usize {
        self.m
    }
}

/// What a [`DecodingState`] has absorbed, detached from its feature map: a state handed from the
/// process that prefilled a prompt to the one that decodes it (poly-dist sends it over MPI). The
/// receiver builds the same map (from the same seed) and calls [`DecodingState::restore`].
#[derive(Clone, Debug, PartialEq)]
pub struct DecodingSnapshot<T> {
    /// Tokens absorbed.
    pub tokens: usize,
    /// Key dimension.
    pub d: usize,
    /// Value dimension.
    pub d_v: usize,
    /// Feature dimension.
    pub m: usize,
    /// A value that differs between maps of other parameters or seeds (the features of a fixed
    /// probe row, summed with weights), so a snapshot is never restored into the wrong map.
    pub map_fingerprint: f64,
    /// `Z_v = Σ φ(k) vᵀ` (`m × d_v`, row-major), `z = Σ φ(k)` (`m`), then `u = Σ |φ(k)|` (`m`):
    /// the layout of the engine's states ([`crate::state_len`]), so the state a
    /// sequence-parallel prefill ends with restores here.
    pub state: Vec<T>,
    /// The mixed variant's raw keys of the current partial block (`tokens mod block` rows of d).
    pub partial_keys: Vec<T>,
    /// Their `[v | 1]` rows.
    pub partial_values: Vec<T>,
}

/// The features of a fixed probe row, summed with weights 1, 2, 3, … (see
/// [`DecodingSnapshot::map_fingerprint`]).
pub fn map_fingerprint<T: Element>(map: &dyn FeatureMap<T>) -> f64 {
    let d = map.input_dim();
    let probe: Vec<T> = (0..d)
        .map(|i| T::from_f64(((i * 7 + 3) % 11) as f64 / 11.0 - 0.45))
        .collect();
    let mut features = vec![T::ZERO; map.feature_dim()];
    map.map_keys_into(&probe, &mut features);
    features
        .iter()
        .enumerate()
        .map(|(i, x)| (i + 1) as f64 * x.to_f64())
        .sum()
}

/// Model FLOPs of decoding the last `dims.n_q` of `dims.n_k` tokens after a prefill of the
/// others, over all heads, counted as [`crate::linear_attention_flops`] counts: each key's
/// features and its rank-one update of `Z` (`2·m·(d_v+1)`), each query row's features and its
/// read of `Z` (`2·m·(d_v+1)`), and in the mixed variant the exact local weights (on average
/// half a block of `2·(d + d_v + 1)` each).
pub fn decoding_flops<T: Element>(
    dims: &poly_core::Dims,
    map: &dyn FeatureMap<T>,
    cfg: &LinearAttentionConfig,
) -> f64 {
    let m = match map.tensored_inner() {
        Some(inner) => (inner.feature_dim() as f64).powi(2),
        None => map.feature_dim() as f64,
    };
    let dv1 = (dims.d_v + 1) as f64;
    let (queries, keys) = (
        (dims.batch_heads() * dims.n_q) as f64,
        (dims.batch * dims.kv_heads * dims.n_k) as f64,
    );
    let local = if cfg.local_exact {
        queries * cfg.block.min(dims.n_k) as f64 * (dims.d as f64 + dv1)
    } else {
        0.0
    };
    (queries + keys) * (map.flops_per_row() + 2.0 * m * dv1) + local
}

/// `Σ a_i b_i` over the common length.
fn dot<T: Element>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::ZERO, |acc, (&x, &y)| acc + x * y)
}

/// `Σ |a_i| |b_i|` in f64.
fn abs_dot<T: Element>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.to_f64() * y.to_f64()).abs())
        .sum()
}

/// `Z_v += φ(k) vᵀ` and `z += φ(k)` for one token, `c = [v | 1]`: the state's layout is the
/// engine's (`crate::state_len`), the normalizer's column kept after `Z_v`.
fn absorb_token<T: Element>(state: &mut [T], features: &[T], c: &[T]) {
    let (z_v, z) = state.split_at_mut(features.len() * (c.len() - 1));
    rank_one_update(z_v, features, &c[..c.len() - 1]);
    axpy(z, T::ONE, features);
}

/// `u += |x|`.
fn add_magnitudes<T: Element>(u: &mut [T], x: &[T]) {
    u.iter_mut()
        .zip(x)
        .for_each(|(u, &x)| *u += T::from_f64(x.to_f64().abs()));
}

/// `y += a · x` over the common length.
fn axpy<T: Element>(y: &mut [T], a: T, x: &[T]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}
