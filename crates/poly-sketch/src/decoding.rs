//! Token-by-token decoding (MATH.md §4.4): the state after t tokens is
//! `Z_t = Σ_{j≤t} φ(k_j) [v_j | 1]ᵀ` (`m × (d_v+1)`); the output of token t is `φ(q_t)ᵀ Z_t`,
//! normalized by its last column. Each step costs `O(m·d_v)` plus one feature map, whatever t.

use crate::feature_map::{FeatureMap, check_finite};
use crate::linear::normalize_row;
use poly_core::{Element, Error, Normalization, Result, RowPosition};

/// The running state of one head.
#[derive(Clone, Debug)]
pub struct DecodingState<T> {
    d: usize,
    d_v: usize,
    m: usize,
    state: Vec<T>,
    tokens: usize,
    normalization: Normalization,
}

impl<T: Element> DecodingState<T> {
    /// An empty state for inputs of dimension `map.input_dim()` and values of dimension `d_v`.
    pub fn new(map: &dyn FeatureMap<T>, d_v: usize, normalization: Normalization) -> Self {
        let m = map.feature_dim();
        DecodingState {
            d: map.input_dim(),
            d_v,
            m,
            state: vec![T::ZERO; m * (d_v + 1)],
            tokens: 0,
            normalization,
        }
    }

    /// Tokens absorbed so far.
    pub fn len(&self) -> usize {
        self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Absorbs the keys and values of a prompt (`rows × d` and `rows × d_v`).
    ///
    /// # Errors
    /// Lengths that are not whole rows of the same count.
    pub fn prefill(&mut self, map: &dyn FeatureMap<T>, k: &[T], v: &[T]) -> Result<()> {
        let rows = self.check_rows(k, v)?;
        // Keys are checked by `map_rows`; a non-finite value would poison the state for good.
        check_finite(v, self.d_v, "decoding value")?;
        let features = map.map_rows(k)?;
        let dv1 = self.d_v + 1;
        for (f, v) in features.chunks_exact(self.m).zip(v.chunks_exact(self.d_v)) {
            for (l, &fl) in f.iter().enumerate() {
                let row = &mut self.state[l * dv1..(l + 1) * dv1];
                for (z, &x) in row.iter_mut().zip(v) {
                    *z += fl * x;
                }
                row[self.d_v] += fl;
            }
        }
        self.tokens += rows;
        Ok(())
    }

    /// Absorbs one token's `k`, `v` and returns the output for its query `q`.
    ///
    /// # Errors
    /// Wrong lengths; a zero normalizer (`Sum`); a non-finite output.
    pub fn step(&mut self, map: &dyn FeatureMap<T>, q: &[T], k: &[T], v: &[T]) -> Result<Vec<T>> {
        if q.len() != self.d {
            return Err(Error::InvalidParameter {
                name: "query length",
                value: q.len().to_string(),
                expected: "the map's input dimension",
            });
        }
        self.prefill(map, k, v)?;
        let a = map.map_rows(q)?;
        // φ(q)ᵀ Z in f64: one row, so the extra precision costs nothing.
        let dv1 = self.d_v + 1;
        let mut y = vec![0.0f64; dv1];
        for (l, &al) in a.iter().enumerate() {
            for (acc, z) in y.iter_mut().zip(&self.state[l * dv1..(l + 1) * dv1]) {
                *acc += al.to_f64() * z.to_f64();
            }
        }
        let at = RowPosition {
            batch: 0,
            head: 0,
            row: self.tokens - 1,
        };
        let mut out = vec![T::ZERO; self.d_v];
        normalize_row(&y, self.normalization, at, &mut out)?;
        Ok(out)
    }

    fn check_rows(&self, k: &[T], v: &[T]) -> Result<usize> {
        let rows = k.len() / self.d;
        if !k.len().is_multiple_of(self.d) || v.len() != rows * self.d_v {
            return Err(Error::InvalidParameter {
                name: "decoding input",
                value: format!("{} key values, {} value values", k.len(), v.len()),
                expected: "whole rows: rows × d keys and rows × d_v values",
            });
        }
        Ok(rows)
    }
}
