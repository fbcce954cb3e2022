//! One block of one head: its prepared inputs, state features and local weights.

use super::LinearAttentionConfig;
use crate::exact2::pack_symmetric_square_transposed;
use crate::feature_map::FeatureMap;
use poly_core::primitives::powi;
use poly_core::primitives::{gemm_ab, gemm_abt, gemm_add_ab, gemm_add_atb};
use poly_core::{Element, Result, RowPosition, layernorm_in_place};

/// How the weights inside a diagonal block are computed.
#[derive(Clone, Copy)]
enum Local<'a, T: Element> {
    /// `A_l B_lᵀ` from the state features themselves.
    Features,
    /// `(M_q M_kᵀ)^∘2` from the inner map of a self-tensored sketch.
    Squared(&'a dyn FeatureMap<T>),
    /// Exact `(q·k)^p` on the prepared inputs (the mixed variant).
    Exact(u32),
}

/// One (batch, head): its slices of q, k, v and the shared parameters.
pub(super) struct Head<'a, T: Element> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub d: usize,
    pub d_v: usize,
    pub map: &'a dyn FeatureMap<T>,
    pub cfg: &'a LinearAttentionConfig,
    pub batch: usize,
    pub head: usize,
}

/// Buffers for one block at a time, allocated once per task.
pub(super) struct Scratch<T> {
    /// Prepared (LayerNormed, scaled) query and key rows, `b × d`.
    xq: Vec<T>,
    xk: Vec<T>,
    /// Inner-sketch rows `M` of a self-tensored map, `b × r`.
    mq: Vec<T>,
    mk: Vec<T>,
    /// State features `A_l`, `B_l`: `b × m`, or `m × b` (transposed) for a self-tensored map.
    pub a: Vec<T>,
    pub b: Vec<T>,
    /// Columns of `M` while packing (self-tensored maps), `r × b`.
    columns: Vec<T>,
    /// `[V_l | 1]`: `b × (d_v + 1)`.
    pub c: Vec<T>,
    /// Local weights, `b × b`.
    w: Vec<T>,
    /// Unnormalized outputs `[Σ w v | Σ w]`, `b × (d_v + 1)`.
    y: Vec<T>,
}

impl<T: Element> Head<'_, T> {
    fn local(&self) -> Local<'_, T> {
        match (self.cfg.local_exact, self.map.tensored_inner()) {
            (true, _) => Local::Exact(self.map.polynomial_degree().unwrap_or(1)),
            (false, Some(inner)) => Local::Squared(inner),
            (false, None) => Local::Features,
        }
    }

    pub fn m(&self) -> usize {
        self.map.feature_dim()
    }

    pub fn dv1(&self) -> usize {
        self.d_v + 1
    }

    pub fn scratch(&self, block: usize) -> Scratch<T> {
        let r = self
            .map
            .tensored_inner()
            .map_or(0, |inner| inner.feature_dim());
        let zeros = |len| vec![T::ZERO; len];
        Scratch {
            xq: zeros(block * self.d),
            xk: zeros(block * self.d),
            mq: zeros(block * r),
            mk: zeros(block * r),
            a: zeros(block * self.m()),
            b: zeros(block * self.m()),
            columns: zeros(block * r),
            c: zeros(block * self.dv1()),
            w: zeros(block * block),
            y: zeros(block * self.dv1()),
        }
    }

    /// Rows `start..start + rows` of q or k after the optional LayerNorm (and scale for q).
    fn prepare(&self, x: &[T], start: usize, rows: usize, is_query: bool, dst: &mut [T]) {
        let dst = &mut dst[..rows * self.d];
        dst.copy_from_slice(&x[start * self.d..(start + rows) * self.d]);
        if self.cfg.layernorm {
            layernorm_in_place(dst, self.d).expect("rows of the validated head dimension d ≥ 1");
        }
        if let (true, Some(s)) = (is_query, self.cfg.scale) {
            let s = T::from_f64(s);
            dst.iter_mut().for_each(|x| *x *= s);
        }
    }

    /// Whether the state features are stored transposed (`m × rows`): for self-tensored maps,
    /// whose packing is then one contiguous product per feature.
    fn transposed(&self) -> bool {
        self.map.tensored_inner().is_some()
    }

    /// State features of prepared rows `x` into `features`; for a self-tensored map the inner
    /// rows go to `inner` first and are packed from there, transposed.
    fn features(
        &self,
        x: &[T],
        rows: usize,
        is_query: bool,
        inner: &mut [T],
        columns: &mut [T],
        features: &mut [T],
    ) {
        let (x, features) = (&x[..rows * self.d], &mut features[..rows * self.m()]);
        match self.map.tensored_inner() {
            Some(map) => {
                let r = map.feature_dim();
                map.map_into(x, &mut inner[..rows * r]);
                pack_symmetric_square_transposed(&inner[..rows * r], rows, r, columns, features);
            }
            None if is_query => self.map.map_queries_into(x, features),
            None => self.map.map_keys_into(x, features),
        }
    }

    /// Key side of block `start..start + rows`: `B_l` into `s.b` and `[V_l | 1]` into `s.c`.
    pub fn key_block(&self, start: usize, rows: usize, s: &mut Scratch<T>) {
        self.prepare(self.k, start, rows, false, &mut s.xk);
        self.features(&s.xk, rows, false, &mut s.mk, &mut s.columns, &mut s.b);
        let dv1 = self.dv1();
        let values = &self.v[start * self.d_v..(start + rows) * self.d_v];
        for (c, v) in s.c.chunks_exact_mut(dv1).zip(values.chunks_exact(self.d_v)) {
            c[..self.d_v].copy_from_slice(v);
            c[self.d_v] = T::ONE;
        }
    }

    /// `state += B_lᵀ [V_l | 1]` for the key block last loaded into `s`.
    pub fn absorb(&self, rows: usize, s: &Scratch<T>, state: &mut [T]) {
        if self.transposed() {
            gemm_add_ab(state, &s.b, &s.c, self.m(), self.dv1(), rows);
        } else {
            gemm_add_atb(state, &s.b, &s.c, self.m(), self.dv1(), rows);
        }
    }

    /// Query side of block `start..start + rows`: `A_l` into `s.a`.
    pub fn query_block(&self, start: usize, rows: usize, s: &mut Scratch<T>) {
        self.prepare(self.q, start, rows, true, &mut s.xq);
        self.features(&s.xq, rows, true, &mut s.mq, &mut s.columns, &mut s.a);
    }

    /// Outputs of a non-causal query block (loaded by `query_block`): `A_l H`, normalized.
    pub fn read_state(
        &self,
        start: usize,
        rows: usize,
        s: &mut Scratch<T>,
        state: &[T],
        out: &mut [T],
    ) -> Result<()> {
        s.y[..rows * self.dv1()].fill(T::ZERO);
        self.add_earlier(rows, s, state);
        self.normalize(&s.y, start, rows, out)
    }

    /// Outputs of a causal block whose keys and queries are loaded in `s`:
    /// `lt(W_l) [V_l | 1] + A_l Z`, normalized into `out` (the block's rows).
    pub fn causal_block(
        &self,
        start: usize,
        rows: usize,
        s: &mut Scratch<T>,
        earlier: &[T],
        out: &mut [T],
    ) -> Result<()> {
        let w = &mut s.w[..rows * rows];
        match self.local() {
            Local::Features => {
                gemm_abt(w, &s.a, &s.b, rows, rows, self.m(), T::ONE);
                lower_triangle(w, rows, |x| x);
            }
            Local::Squared(inner) => {
                let r = inner.feature_dim();
                gemm_abt(w, &s.mq, &s.mk, rows, rows, r, T::ONE);
                lower_triangle(w, rows, |x| x * x);
            }
            Local::Exact(degree) => {
                gemm_abt(w, &s.xq, &s.xk, rows, rows, self.d, T::ONE);
                lower_triangle(w, rows, |x| powi(x, degree));
            }
        }
        let dv1 = self.dv1();
        gemm_ab(&mut s.y, w, &s.c, rows, dv1, rows);
        self.add_earlier(rows, s, earlier);
        self.normalize(&s.y, start, rows, out)
    }

    /// `y += A_l Z` for the query block loaded in `s`.
    fn add_earlier(&self, rows: usize, s: &mut Scratch<T>, state: &[T]) {
        let (dv1, m) = (self.dv1(), self.m());
        if self.transposed() {
            gemm_add_atb(&mut s.y, &s.a, state, rows, dv1, m);
        } else {
            gemm_add_ab(&mut s.y, &s.a, state, rows, dv1, m);
        }
    }

    /// Rows of `[Σ w v | Σ w]` → outputs, with the configured normalization.
    fn normalize(&self, y: &[T], start: usize, rows: usize, out: &mut [T]) -> Result<()> {
        let dv1 = self.dv1();
        for (r, (row, o)) in y[..rows * dv1]
            .chunks_exact(dv1)
            .zip(out.chunks_exact_mut(self.d_v))
            .enumerate()
        {
            let at = RowPosition::new(self.batch, self.head, start + r);
            super::normalize_row(row, self.cfg.normalization, at, o)?;
        }
        Ok(())
    }
}

/// Applies `f` on and below the diagonal of a `rows × rows` matrix and zeroes above it (key
/// `j > i` is the future of query `i`).
fn lower_triangle<T: Element>(w: &mut [T], rows: usize, f: impl Fn(T) -> T) {
    for (i, row) in w.chunks_exact_mut(rows).enumerate() {
        let (past, future) = row.split_at_mut(i + 1);
        past.iter_mut().for_each(|x| *x = f(*x));
        future.fill(T::ZERO);
    }
}
