//! One block of one head: its prepared inputs, state features and local weights.

use super::LinearAttentionConfig;
use crate::feature_map::FeatureMap;
use poly_core::primitives::{
    add_row_dots, gemm_ab, gemm_abt, gemm_add_ab, gemm_add_atb, weighted_row_sum,
};
use poly_core::primitives::{pack_symmetric_square, pack_symmetric_square_transposed, powi};
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

/// What [`Head::features`] computes for the normalizer besides the features.
enum Normalizer<'a, T> {
    /// Queries: `dots += A·z` (`z` the earlier state's normalizer column).
    Dots { z: &'a [T], dots: &'a mut [T] },
    /// Keys: `sums = Bᵀ1` (`ones`: at least a block of ones, for maps without packing).
    Sums { sums: &'a mut [T], ones: &'a [T] },
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
    /// First row of the key block last loaded: its values are `v`'s rows from there.
    key_start: usize,
    /// `B_lᵀ1` of the key block last loaded, `m`.
    b_sums: Vec<T>,
    /// `b` ones: the weights of `B_lᵀ1` as one row-weighted sum.
    ones: Vec<T>,
    /// Local weights, `b × b`.
    w: Vec<T>,
    /// Unnormalized outputs `Σ w v`, `b × d_v`.
    y: Vec<T>,
    /// Their normalizers `Σ w`, `b`.
    y_sum: Vec<T>,
    /// The magnitude of each row's normalizer terms (see [`super::normalize_row`]), `b`.
    magnitude: Vec<f64>,
    /// Running `Σ_j |φ(k_j)|` inside a causal block (non-transposed features), `m`.
    running: Vec<f64>,
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

    /// Length of a state: `Z_v = Σ B_lᵀ V_l` (`m × d_v`, row-major), then `z = Σ B_lᵀ 1` (`m`),
    /// the normalizer's column kept apart so that every product is `d_v` wide (a 65th column costs
    /// faer a whole 8-column panel), then `u = Σ_j |φ(k_j)|` (`m`), which bounds the normalizer's
    /// terms. States are added element by element, so the scans carry `z` and `u` along with `Z_v`
    /// without knowing they are there.
    pub fn state_len(&self) -> usize {
        super::shard::state_len(self.map, self.d_v)
    }

    /// A state's three parts (see [`Self::state_len`]): `(Z_v, z, u)`.
    fn state_parts<'s>(&self, state: &'s [T]) -> (&'s [T], &'s [T], &'s [T]) {
        let (z_v, rest) = state.split_at(self.m() * self.d_v);
        let (z, u) = rest.split_at(self.m());
        (z_v, z, u)
    }

    /// Whether the normalizer can cancel and so has to be judged against the magnitude of its
    /// terms: `Sum` or `OnePlusSum` with a map whose weights can be negative.
    fn judges_normalizer(&self) -> bool {
        self.cfg.normalization != poly_core::Normalization::None && !self.map.nonnegative_weights()
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
            key_start: 0,
            b_sums: zeros(self.m()),
            ones: vec![T::ONE; block],
            w: zeros(block * block),
            y: zeros(block * self.d_v),
            y_sum: zeros(block),
            magnitude: vec![0.0; block],
            running: vec![0.0; self.m()],
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

    /// Whether the key features `B` are stored transposed (`m × rows`): for self-tensored maps,
    /// whose packing is then one contiguous product per feature, and whose state update
    /// `Z += B [V | 1]` is then a plain product. Query features `A` are always `rows × m`: the
    /// read-out `A Z` runs about 15% faster on them than `Aᵀ Z` on transposed ones (210–221 vs
    /// 252–257 µs at m = 528, 256 rows, d_v = 64, one thread), and packing them row by row costs no
    /// more.
    fn keys_transposed(&self) -> bool {
        self.map.tensored_inner().is_some()
    }

    /// State features of prepared rows `x` into `features`, and what the normalizer needs of
    /// them (`normalizer`): for queries `dots += A·z`, for keys `sums = Bᵀ1`. For a self-tensored
    /// map the inner rows go to `inner` first and are packed from there (keys transposed), the
    /// normalizer's products fused into the packing.
    fn features(
        &self,
        x: &[T],
        rows: usize,
        inner: &mut [T],
        columns: &mut [T],
        features: &mut [T],
        normalizer: Normalizer<'_, T>,
    ) {
        let m = self.m();
        let (x, features) = (&x[..rows * self.d], &mut features[..rows * m]);
        let Some(map) = self.map.tensored_inner() else {
            match normalizer {
                Normalizer::Dots { z, dots } => {
                    self.map.map_queries_into(x, features);
                    add_row_dots(dots, features, z);
                }
                Normalizer::Sums { sums, ones } => {
                    self.map.map_keys_into(x, features);
                    weighted_row_sum(sums, &ones[..rows], features);
                }
            }
            return;
        };
        let r = map.feature_dim();
        let inner = &mut inner[..rows * r];
        map.map_into(x, inner);
        match normalizer {
            Normalizer::Dots { z, dots } => {
                pack_symmetric_square(inner, r, features, Some((z, dots)));
            }
            Normalizer::Sums { sums, .. } => {
                sums.fill(T::ZERO);
                pack_symmetric_square_transposed(inner, rows, r, columns, features, Some(sums));
            }
        }
    }

    /// Key side of block `start..start + rows`: `B_l` into `s.b` and `B_lᵀ1` into `s.b_sums`
    /// (its values are read from `v`).
    pub fn key_block(&self, start: usize, rows: usize, s: &mut Scratch<T>) {
        self.prepare(self.k, start, rows, false, &mut s.xk);
        let sums = Normalizer::Sums {
            sums: &mut s.b_sums,
            ones: &s.ones,
        };
        self.features(&s.xk, rows, &mut s.mk, &mut s.columns, &mut s.b, sums);
        s.key_start = start;
    }

    /// The values of rows `key_start..key_start + rows` (a key block's, read in place).
    fn block_values(&self, key_start: usize, rows: usize) -> &[T] {
        &self.v[key_start * self.d_v..(key_start + rows) * self.d_v]
    }

    /// `Z_v += B_lᵀ V_l`, `z += B_lᵀ 1` and `u += Σ_j |φ(k_j)|` for the key block last loaded
    /// into `s`.
    pub fn absorb(&self, rows: usize, s: &Scratch<T>, state: &mut [T]) {
        let (m, d_v) = (self.m(), self.d_v);
        let (z_v, rest) = state.split_at_mut(m * d_v);
        let (z, u) = rest.split_at_mut(m);
        let b = &s.b[..rows * m];
        let values = self.block_values(s.key_start, rows);
        if self.keys_transposed() {
            gemm_add_ab(z_v, b, values, m, d_v, rows);
        } else {
            gemm_add_atb(z_v, b, values, m, d_v, rows);
        }
        z.iter_mut().zip(&s.b_sums).for_each(|(z, &b)| *z += b);
        if !self.judges_normalizer() {
            return;
        }
        if self.keys_transposed() {
            for (u, feature) in u.iter_mut().zip(b.chunks_exact(rows)) {
                *u += feature.iter().fold(T::ZERO, |acc, &x| acc + abs(x));
            }
        } else {
            for row in b.chunks_exact(m) {
                u.iter_mut().zip(row).for_each(|(u, &x)| *u += abs(x));
            }
        }
    }

    /// `s.magnitude[i] = ⟨|φ(q_i)|, u + Σ_{j ≤ i in this block} |φ(k_j)|⟩` for the loaded query
    /// block (the key block too when `with_local_keys`), accumulated in f64.
    fn feature_magnitudes(&self, rows: usize, s: &mut Scratch<T>, u: &[T], with_local_keys: bool) {
        let m = self.m();
        let (a, b) = (&s.a[..rows * m], &s.b[..rows * m]);
        let magnitude = &mut s.magnitude[..rows];
        let keys_transposed = self.keys_transposed();
        let running = &mut s.running;
        running.iter_mut().zip(u).for_each(|(r, u)| *r = u.to_f64());
        for (i, (mag, a)) in magnitude.iter_mut().zip(a.chunks_exact(m)).enumerate() {
            if with_local_keys {
                for (f, r) in running.iter_mut().enumerate() {
                    // Key i's feature f, in either layout of the key features.
                    let b_if = if keys_transposed {
                        b[f * rows + i]
                    } else {
                        b[i * m + f]
                    };
                    *r += b_if.to_f64().abs();
                }
            }
            *mag = a
                .iter()
                .zip(running.iter())
                .map(|(a, r)| a.to_f64().abs() * r)
                .sum();
        }
    }

    /// Query side of block `start..start + rows` against the state `earlier`: `A_l` into `s.a`
    /// and the normalizers' read-out `A_l z` into `s.y_sum`.
    pub fn query_block(&self, start: usize, rows: usize, s: &mut Scratch<T>, earlier: &[T]) {
        self.prepare(self.q, start, rows, true, &mut s.xq);
        let dots = &mut s.y_sum[..rows];
        dots.fill(T::ZERO);
        let (_, z, _) = self.state_parts(earlier);
        let normalizer = Normalizer::Dots { z, dots };
        self.features(&s.xq, rows, &mut s.mq, &mut s.columns, &mut s.a, normalizer);
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
        s.y[..rows * self.d_v].fill(T::ZERO);
        self.add_earlier(rows, s, state);
        if self.judges_normalizer() {
            self.feature_magnitudes(rows, s, self.magnitude_state(state), false);
        }
        self.normalize(start, rows, s, out)
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
        // The lower triangle in two row halves: the top rows see only the first `top` keys, so
        // a quarter of the square is never computed (its weights would all be masked).
        let top = local_split(rows);
        let d_v = self.d_v;
        let local = self.local();
        let (lq, lk, width) = match local {
            Local::Features => (&s.a, &s.b, self.m()),
            Local::Squared(inner) => (&s.mq, &s.mk, inner.feature_dim()),
            Local::Exact(_) => (&s.xq, &s.xk, self.d),
        };
        for (first_row, row_count, keys) in [(0, top, top), (top, rows - top, rows)] {
            if row_count == 0 {
                continue;
            }
            let w = &mut s.w[first_row * top..first_row * top + row_count * keys];
            let queries = &lq[first_row * width..(first_row + row_count) * width];
            gemm_abt(w, queries, lk, row_count, keys, width, T::ONE);
            let sums = &mut s.y_sum[first_row..first_row + row_count];
            match local {
                Local::Features => lower_triangle(w, keys, first_row, sums, |x| x),
                Local::Squared(_) => lower_triangle(w, keys, first_row, sums, |x| x * x),
                Local::Exact(degree) => {
                    lower_triangle(w, keys, first_row, sums, |x| powi(x, degree))
                }
            }
            let y = &mut s.y[first_row * d_v..(first_row + row_count) * d_v];
            let values = self.block_values(s.key_start, keys);
            gemm_ab(y, w, values, row_count, d_v, keys);
        }
        self.add_earlier(rows, s, earlier);
        if self.judges_normalizer() {
            let u = self.magnitude_state(earlier);
            match self.local() {
                Local::Exact(_) => {
                    // Exact local weights are the terms themselves, as in the exact engine.
                    self.feature_magnitudes(rows, s, u, false);
                    let (top_rows, bottom_rows) = s.w.split_at(top * top);
                    let local_rows = top_rows
                        .chunks_exact(top.max(1))
                        .take(top)
                        .chain(bottom_rows.chunks_exact(rows).take(rows - top));
                    for (mag, w) in s.magnitude.iter_mut().zip(local_rows) {
                        *mag += w.iter().map(|w| w.to_f64().abs()).sum::<f64>();
                    }
                }
                Local::Features | Local::Squared(_) => self.feature_magnitudes(rows, s, u, true),
            }
        }
        self.normalize(start, rows, s, out)
    }

    /// The `u` part of a state (see [`Self::state_len`]).
    fn magnitude_state<'s>(&self, state: &'s [T]) -> &'s [T] {
        self.state_parts(state).2
    }

    /// `y += A_l Z_v` for the query block loaded in `s` (its `A_l z` came with the features).
    fn add_earlier(&self, rows: usize, s: &mut Scratch<T>, state: &[T]) {
        let (d_v, m) = (self.d_v, self.m());
        let (z_v, _, _) = self.state_parts(state);
        gemm_add_ab(&mut s.y[..rows * d_v], &s.a, z_v, rows, d_v, m);
    }

    /// Rows of `Σ w v` in `s.y`, with `Σ w` in `s.y_sum`, → outputs, with the configured
    /// normalization and the magnitudes in `s.magnitude` (for a normalizer that is not judged,
    /// `|Σ w|` itself).
    fn normalize(
        &self,
        start: usize,
        rows: usize,
        s: &mut Scratch<T>,
        out: &mut [T],
    ) -> Result<()> {
        let d_v = self.d_v;
        let sums = &s.y_sum[..rows];
        if !self.judges_normalizer() {
            for (mag, sum) in s.magnitude.iter_mut().zip(sums) {
                *mag = sum.to_f64().abs();
            }
        }
        let rows_out = s.y[..rows * d_v]
            .chunks_exact(d_v)
            .zip(sums)
            .zip(&s.magnitude)
            .zip(out.chunks_exact_mut(d_v));
        for (r, (((row, &sum), &magnitude), o)) in rows_out.enumerate() {
            let at = RowPosition::new(self.batch, self.head, start + r);
            super::normalize_row(row, sum, self.cfg.normalization, magnitude, at, o)?;
        }
        Ok(())
    }
}

/// Applies `f` to the visible weights of rows `first_row, first_row + 1, …` of a block (`w` holds
/// them, `keys` wide), zeroes the rest (key `j > i` is the future of query `i`) and adds each
/// row's sum of weights to `sums`.
fn lower_triangle<T: Element>(
    w: &mut [T],
    keys: usize,
    first_row: usize,
    sums: &mut [T],
    f: impl Fn(T) -> T,
) {
    for (i, (row, sum)) in w.chunks_exact_mut(keys).zip(sums).enumerate() {
        let (past, future) = row.split_at_mut((first_row + i + 1).min(keys));
        *sum += past.iter_mut().fold(T::ZERO, |acc, x| {
            *x = f(*x);
            acc + *x
        });
        future.fill(T::ZERO);
    }
}

/// Where a block's rows are cut for the local weights (see [`Head::causal_block`]): half, in
/// whole 16-row steps once there are enough rows for the GEMMs to care.
fn local_split(rows: usize) -> usize {
    if rows >= 64 {
        rows / 2 / 16 * 16
    } else {
        rows / 2
    }
}

/// `|x|` in the element type.
fn abs<T: Element>(x: T) -> T {
    if x < T::ZERO { T::ZERO - x } else { x }
}
