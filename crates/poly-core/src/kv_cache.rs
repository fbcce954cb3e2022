//! Exact decoding: a cache of keys and values that grows token by token, and attention of a few
//! new queries over all of it with split-K parallelism (flash-decoding).
//!
//! Each key chunk of each k/v head is a task that leaves partial row statistics (the running
//! maximum, Σ w', Σ |w'| and Σ w' v, as the tiled engine keeps them, docs/math.md §2.3); the
//! partials are merged exactly, in chunk order, by rescaling to the largest maximum. Chunks are
//! fixed by the cache length, so the result never depends on the thread count. Tokens are checked
//! for finite values once, when they enter the cache.

use crate::config::{AttentionConfig, Kernel, Mask};
use crate::element::Element;
use crate::engine::{QueryTile, run_with_threads};
use crate::error::{Error, Result, RowPosition, TensorName};
use crate::kernels::{first_non_finite, powi};
use crate::layernorm::layernorm_in_place;
use crate::normalize::{RowTotals, finalize_row};
use crate::online::TileStats;
use crate::resources::check_elements;
use crate::tensor::Tensor;
use crate::validate::Dims;
use rayon::prelude::*;

/// Keys per split-K task.
pub const DECODE_CHUNK: usize = 1024;

/// The keys and values of `kv_heads` heads so far, with the attention they are read with.
#[derive(Clone, Debug)]
pub struct KvCache<T> {
    cfg: AttentionConfig,
    kv_heads: usize,
    d: usize,
    d_v: usize,
    len: usize,
    /// Per k/v head: `len × d` keys (LayerNormed at entry when the config asks) and `len × d_v`
    /// values.
    keys: Vec<Vec<T>>,
    values: Vec<Vec<T>>,
}

/// The tokens of a [`KvCache`] as stored, detached from it (see [`KvCache::snapshot`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KvCacheSnapshot<T> {
    /// Key/value heads.
    pub kv_heads: usize,
    /// Key dimension.
    pub d: usize,
    /// Value dimension.
    pub d_v: usize,
    /// Cached tokens.
    pub len: usize,
    /// `[kv_heads, len, d]`, row-major (LayerNormed when the cache's configuration asks).
    pub keys: Vec<T>,
    /// `[kv_heads, len, d_v]`, row-major.
    pub values: Vec<T>,
}

/// One chunk's partial statistics for the query rows.
struct Partial<T> {
    max: Vec<T>,
    sum: Vec<T>,
    abs_sum: Vec<T>,
    acc: Vec<T>,
}

impl<T: Element> KvCache<T> {
    /// An empty cache for `kv_heads` heads of keys of dimension `d` and values of `d_v`, read with
    /// `cfg`'s kernel, mask, window, normalization, scale, LayerNorm and threads. Queries are the
    /// newest tokens, aligned as the engine aligns n_q queries to the last n_k keys: under
    /// `Mask::Causal` query i of t sees the keys up to its own position (len − t + i), under
    /// `Mask::None` every cached key, and a window narrows either to a band.
    ///
    /// # Errors
    /// An invalid configuration, or a zero dimension.
    pub fn new(cfg: &AttentionConfig, kv_heads: usize, d: usize, d_v: usize) -> Result<Self> {
        cfg.validate()?;
        if kv_heads == 0 || d == 0 || d_v == 0 {
            return Err(Error::InvalidParameter {
                name: "kv cache",
                value: format!("kv_heads {kv_heads}, d {d}, d_v {d_v}"),
                expected: "kv_heads, d, d_v ≥ 1",
            });
        }
        Ok(KvCache {
            cfg: *cfg,
            kv_heads,
            d,
            d_v,
            len: 0,
            keys: vec![Vec::new(); kv_heads],
            values: vec![Vec::new(); kv_heads],
        })
    }

    /// Cached tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reserves room for `additional` more tokens (checked against the memory budget).
    ///
    /// # Errors
    /// A size beyond the memory budget.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        let total = self.len.saturating_add(additional);
        check_elements("kv cache keys", &[total, self.d], size_of::<T>())?;
        check_elements("kv cache values", &[total, self.d_v], size_of::<T>())?;
        for (k, v) in self.keys.iter_mut().zip(&mut self.values) {
            k.reserve(additional * self.d);
            v.reserve(additional * self.d_v);
        }
        Ok(())
    }

    /// Appends `t` tokens: `k` is `[kv_heads, t, d]` and `v` `[kv_heads, t, d_v]`, row-major. The
    /// tokens are validated here, once; a call that fails leaves the cache unchanged.
    ///
    /// # Errors
    /// Lengths that are not whole tokens; non-finite values; a size beyond the memory budget.
    pub fn append(&mut self, k: &[T], v: &[T]) -> Result<()> {
        let per_token = self.kv_heads * self.d;
        let t = k.len() / per_token.max(1);
        if k.len() != t * per_token || v.len() != t * self.kv_heads * self.d_v {
            return Err(Error::InvalidParameter {
                name: "kv cache append",
                value: format!("{} key values, {} value values", k.len(), v.len()),
                expected: "[kv_heads, t, d] keys and [kv_heads, t, d_v] values",
            });
        }
        for (name, data, width) in [
            (TensorName::Key, k, self.d),
            (TensorName::Value, v, self.d_v),
        ] {
            if let Some(flat) = first_non_finite(data) {
                let (head, rest) = (flat / (t * width), flat % (t * width));
                return Err(Error::NonFinite {
                    tensor: name,
                    index: [0, head, self.len + rest / width, rest % width],
                    value: data[flat].to_f64(),
                });
            }
        }
        self.reserve(t)?;
        for h in 0..self.kv_heads {
            let keys = &k[h * t * self.d..(h + 1) * t * self.d];
            let start = self.keys[h].len();
            self.keys[h].extend_from_slice(keys);
            if self.cfg.layernorm {
                layernorm_in_place(&mut self.keys[h][start..], self.d)?;
            }
            let values = &v[h * t * self.d_v..(h + 1) * t * self.d_v];
            self.values[h].extend_from_slice(values);
        }
        self.len += t;
        Ok(())
    }

    /// The cached tokens as stored (keys LayerNormed when the configuration asks), to send to
    /// another process, which rebuilds the cache with [`KvCache::from_snapshot`].
    pub fn snapshot(&self) -> KvCacheSnapshot<T> {
        KvCacheSnapshot {
            kv_heads: self.kv_heads,
            d: self.d,
            d_v: self.d_v,
            len: self.len,
            keys: self.keys.concat(),
            values: self.values.concat(),
        }
    }

    /// A cache holding the tokens of `snapshot`, read with `cfg` (which should be the
    /// configuration the snapshot's cache had: keys are not LayerNormed again).
    ///
    /// # Errors
    /// An invalid configuration; lengths that disagree with the snapshot's dimensions;
    /// non-finite values; a size beyond the memory budget.
    pub fn from_snapshot(cfg: &AttentionConfig, snapshot: &KvCacheSnapshot<T>) -> Result<Self> {
        let s = snapshot;
        let mut cache = KvCache::new(cfg, s.kv_heads, s.d, s.d_v)?;
        let expected = |width: usize| s.kv_heads.checked_mul(s.len)?.checked_mul(width);
        if expected(s.d) != Some(s.keys.len()) || expected(s.d_v) != Some(s.values.len()) {
            return Err(Error::InvalidParameter {
                name: "kv cache snapshot",
                value: format!("{} key and {} value values", s.keys.len(), s.values.len()),
                expected: "[kv_heads, len, d] keys and [kv_heads, len, d_v] values",
            });
        }
        for (name, data, width) in [
            (TensorName::Key, &s.keys, s.d),
            (TensorName::Value, &s.values, s.d_v),
        ] {
            if let Some(flat) = first_non_finite(data) {
                let (head, rest) = (flat / (s.len * width), flat % (s.len * width));
                return Err(Error::NonFinite {
                    tensor: name,
                    index: [0, head, rest / width, rest % width],
                    value: data[flat].to_f64(),
                });
            }
        }
        cache.reserve(s.len)?;
        for h in 0..s.kv_heads {
            cache.keys[h].extend_from_slice(&s.keys[h * s.len * s.d..(h + 1) * s.len * s.d]);
            cache.values[h]
                .extend_from_slice(&s.values[h * s.len * s.d_v..(h + 1) * s.len * s.d_v]);
        }
        cache.len = s.len;
        Ok(cache)
    }

    /// Attention of `t` new queries per query head, `q` = `[heads, t, d]` with `heads` a multiple of
    /// `kv_heads` (grouped-query attention), over the cache: `[1, heads, t, d_v]`.
    ///
    /// # Errors
    /// Wrong lengths; non-finite queries; more queries than cached tokens under the causal mask;
    /// the row errors of [`crate::attention`].
    pub fn attend(&self, q: &[T], heads: usize) -> Result<Tensor<T>> {
        let d = self.d;
        if heads == 0 || !heads.is_multiple_of(self.kv_heads) || !q.len().is_multiple_of(heads * d)
        {
            return Err(Error::InvalidParameter {
                name: "kv cache query",
                value: format!("{} values for {heads} heads of d = {d}", q.len()),
                expected: "[heads, t, d] with heads a multiple of the cache's kv_heads",
            });
        }
        let t = q.len() / (heads * d);
        if let Some(flat) = first_non_finite(q) {
            return Err(Error::NonFinite {
                tensor: TensorName::Query,
                index: [0, flat / (t * d), flat % (t * d) / d, flat % d],
                value: q[flat].to_f64(),
            });
        }
        if t == 0 || self.len == 0 || (self.cfg.mask == Mask::Causal && t > self.len) {
            return Err(Error::InvalidParameter {
                name: "kv cache query",
                value: format!("{t} queries over {} cached tokens", self.len),
                expected: "1 ≤ t (≤ the cached tokens when causal)",
            });
        }
        let mut queries = q.to_vec();
        if self.cfg.layernorm {
            layernorm_in_place(&mut queries, d)?;
        }
        let group = heads / self.kv_heads;
        // Only the chunks that some query row sees (a window leaves the older ones out); the
        // row ranges never move back, so the first row's start and the last row's end bound them.
        let dims = Dims::new(1, 1, t, self.len, d, self.d_v);
        let first = dims.key_range(self.cfg.mask, self.cfg.window, 0).start;
        let end = dims.key_range(self.cfg.mask, self.cfg.window, t - 1).end;
        let first_chunk = (first / DECODE_CHUNK).min(end.saturating_sub(1) / DECODE_CHUNK);
        let chunks = end.div_ceil(DECODE_CHUNK) - first_chunk;
        let mut out = Tensor::zeros([1, heads, t, self.d_v])?;
        let scale = T::from_f64(self.cfg.effective_scale(d));
        run_with_threads(self.cfg.threads, || {
            let tasks: Vec<(usize, usize)> = (0..heads)
                .flat_map(|h| (first_chunk..first_chunk + chunks).map(move |c| (h, c)))
                .collect();
            let partials: Vec<Partial<T>> = tasks
                .into_par_iter()
                .map(|(h, c)| {
                    self.partial(&queries[h * t * d..(h + 1) * t * d], h / group, c, t, scale)
                })
                .collect();
            out.as_mut_slice()
                .par_chunks_mut(t * self.d_v)
                .zip(partials.par_chunks(chunks))
                .enumerate()
                .try_for_each(|(h, (head_out, parts))| self.merge(parts, t, h, head_out))
        })??;
        Ok(out)
    }

    /// Partial statistics of chunk `c` of k/v head `kv` for the `t` query rows `q`.
    fn partial(&self, q: &[T], kv: usize, c: usize, t: usize, scale: T) -> Partial<T> {
        let (d, d_v) = (self.d, self.d_v);
        let start = c * DECODE_CHUNK;
        let cols = DECODE_CHUNK.min(self.len - start);
        let initial = match self.cfg.kernel {
            Kernel::Polynomial { .. } => T::ZERO,
            Kernel::Softmax => T::from_f64(f64::NEG_INFINITY),
        };
        let mut p = Partial {
            max: vec![initial; t],
            sum: vec![T::ZERO; t],
            abs_sum: vec![T::ZERO; t],
            acc: vec![T::ZERO; t * d_v],
        };
        let mut scores = vec![T::ZERO; t * cols];
        let tile = QueryTile {
            q,
            rows: t,
            d,
            d_v,
            scale,
            kernel: self.cfg.kernel,
        };
        // The t queries are the newest tokens: the engine's alignment of n_q = t rows to the
        // last of n_k = len keys, with the configured mask and window.
        let dims = Dims::new(1, 1, t, self.len, d, d_v);
        let visible = |r: usize| dims.key_range(self.cfg.mask, self.cfg.window, r);
        let stats = TileStats {
            max: &mut p.max,
            sum: &mut p.sum,
            abs_sum: &mut p.abs_sum,
            acc: &mut p.acc,
        };
        tile.accumulate(
            &self.keys[kv][start * d..(start + cols) * d],
            &self.values[kv][start * d_v..(start + cols) * d_v],
            start,
            start..start + cols,
            cols,
            &visible,
            &mut scores,
            stats,
        );
        p
    }

    /// Merges the chunk partials of one query head in chunk order and finalizes its rows.
    fn merge(&self, parts: &[Partial<T>], t: usize, head: usize, out: &mut [T]) -> Result<()> {
        let d_v = self.d_v;
        for (r, row_out) in out.chunks_exact_mut(d_v).enumerate() {
            let max = parts
                .iter()
                .map(|p| p.max[r])
                .fold(parts[0].max[r], |a, b| if b > a { b } else { a });
            let (mut sum, mut abs_sum) = (T::ZERO, T::ZERO);
            row_out.fill(T::ZERO);
            for p in parts {
                let factor = match self.cfg.kernel {
                    Kernel::Polynomial { degree } if max > T::ZERO => powi(p.max[r] / max, degree),
                    Kernel::Polynomial { .. } => T::ONE,
                    Kernel::Softmax if p.max[r].to_f64() == f64::NEG_INFINITY => T::ZERO,
                    Kernel::Softmax => T::from_f64((p.max[r].to_f64() - max.to_f64()).exp()),
                };
                sum += factor * p.sum[r];
                abs_sum += factor * p.abs_sum[r];
                for (o, &a) in row_out.iter_mut().zip(&p.acc[r * d_v..(r + 1) * d_v]) {
                    *o += factor * a;
                }
            }
            let totals = RowTotals {
                max: max.to_f64(),
                sum: sum.to_f64(),
                abs_sum: match self.cfg.kernel {
                    Kernel::Polynomial { .. } => abs_sum.to_f64(),
                    Kernel::Softmax => sum.to_f64(),
                },
            };
            let at = RowPosition::new(0, head, self.len - t + r);
            finalize_row(row_out, totals, self.cfg.kernel, self.cfg.normalization, at)?;
        }
        Ok(())
    }
}
