//! PolySketch: the Gaussian-tree sketch of the polynomial kernel (docs/math.md §3.1).
//!
//! For degree `p`, a binary tree of `q = 2^⌈log₂ p⌉` leaves: `p` leaves hold the input `x`, the
//! other `q − p` the fixed unit vector `e1` (whose inner product with itself is 1, so the kernel is
//! `(x·y)^p · 1`). Each internal node combines its children's sketches `u`, `v` as
//! `(1/√r)·(u G₁) ⊙ (v G₂)` with independent `N(0, 1)` matrices (`d×r` above leaves, `r×r` above),
//! which makes `E⟨φ(x), φ(y)⟩ = (x·y)^p`.

use crate::feature_map::FeatureMap;
use poly_core::primitives::{gemm_ab, gemm_abt};
use poly_core::{Element, Error, Result, check_allocation, checked_product};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

/// How the tree's combinations are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SketchScale {
    /// `1/√r` per combination: `⟨φ(x), φ(y)⟩` is an unbiased estimate of `(x·y)^p`.
    #[default]
    Unbiased,
    /// Every projection divided by `√r`, as the public JAX code does: at degree 2 the features
    /// estimate `(x·y)²/r`; in general `(x·y)^p / r^(q−1)`. For side-by-side checks only.
    Reference,
}

/// The parameter checks every random map shares: degree, input dimension and sketch size ≥ 1.
pub(crate) fn check_sketch_parameters(d: usize, degree: u32, size: usize) -> Result<()> {
    let bad = |name, expected| {
        Err(Error::InvalidParameter {
            name,
            value: "0".into(),
            expected,
        })
    };
    if degree == 0 {
        return bad("degree", "a degree ≥ 1");
    }
    if size == 0 {
        return bad("sketch-dim", "a sketch size ≥ 1");
    }
    if d == 0 {
        return bad("input dimension", "d ≥ 1");
    }
    Ok(())
}

/// Leaves of the tree for `degree`: the next power of two (the surplus leaves hold e₁).
fn tree_leaves(degree: u32) -> Result<usize> {
    degree
        .checked_next_power_of_two()
        .map(|leaves| leaves as usize)
        .ok_or(Error::InvalidParameter {
            name: "degree",
            value: degree.to_string(),
            expected: "a degree ≤ 2^31 (the sketch tree has the next power of two as leaves)",
        })
}

/// One internal node: the Gaussian matrices applied to its left and right children.
#[derive(Clone, Debug)]
struct Node<T> {
    left: Vec<T>,
    right: Vec<T>,
}

/// A PolySketch feature map of degree `p` and sketch size `r` for inputs of dimension `d`.
#[derive(Clone, Debug)]
pub struct PolySketch<T> {
    d: usize,
    r: usize,
    degree: u32,
    /// Nodes level by level from the leaves up; level `l` has `q / 2^(l+1)` nodes.
    levels: Vec<Vec<Node<T>>>,
    combine: T,
}

impl<T: Element> PolySketch<T> {
    /// Draws the sketch from `seed`.
    ///
    /// # Errors
    /// Degree 0, `d = 0` or sketch size 0.
    pub fn new(d: usize, degree: u32, r: usize, seed: u64, scale: SketchScale) -> Result<Self> {
        check_sketch_parameters(d, degree, r)?;
        let leaves = tree_leaves(degree)?;
        // Level 1 holds `leaves` matrices d × r, the levels above `leaves − 2` matrices r × r.
        let elements = checked_product("PolySketch matrices", &[leaves, d, r])?
            .checked_add(checked_product(
                "PolySketch matrices",
                &[leaves.saturating_sub(2), r, r],
            )?)
            .ok_or(Error::ResourceLimit {
                what: "PolySketch matrices",
                needed_bytes: u64::MAX,
                limit_bytes: poly_core::memory_budget(),
            })?;
        check_allocation("PolySketch matrices", elements, size_of::<T>())?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut gaussian = |rows: usize| -> Vec<T> {
            (0..rows * r)
                .map(|_| T::from_f64(rng.sample::<f64, _>(StandardNormal)))
                .collect()
        };
        let mut levels = Vec::new();
        let mut width = leaves;
        let mut input = d;
        while width > 1 {
            width /= 2;
            levels.push(
                (0..width)
                    .map(|_| Node {
                        left: gaussian(input),
                        right: gaussian(input),
                    })
                    .collect(),
            );
            input = r;
        }
        let combine = match scale {
            SketchScale::Unbiased => 1.0 / (r as f64).sqrt(),
            SketchScale::Reference => 1.0 / r as f64,
        };
        Ok(PolySketch {
            d,
            r,
            degree,
            levels,
            combine: T::from_f64(combine),
        })
    }

    /// The polynomial degree the sketch estimates.
    pub fn degree(&self) -> u32 {
        self.degree
    }
}

impl<T: Element> FeatureMap<T> for PolySketch<T> {
    fn input_dim(&self) -> usize {
        self.d
    }
    fn feature_dim(&self) -> usize {
        if self.degree == 1 { self.d } else { self.r }
    }
    fn map_into(&self, x: &[T], out: &mut [T]) {
        let rows = x.len() / self.d;
        if self.degree == 1 {
            // (x·y)¹ needs no sketch: φ(x) = x is exact.
            out.copy_from_slice(x);
            return;
        }
        let (r, p) = (self.r, self.degree as usize);
        // Leaf sketches: x for the first p leaves, e1 for the padding (projections of e1 are the
        // first row of the Gaussian matrix, the same for every input row).
        let mut e1 = vec![T::ZERO; self.d];
        e1[0] = T::ONE;
        let leaf = |i: usize| -> Option<&[T]> { (i < p).then_some(x) };
        let mut current: Vec<Vec<T>> = Vec::new();
        let (mut a, mut b) = (vec![T::ZERO; rows * r], vec![T::ZERO; rows * r]);
        for (level, nodes) in self.levels.iter().enumerate() {
            let input = if level == 0 { self.d } else { r };
            let mut next = Vec::with_capacity(nodes.len());
            for (i, node) in nodes.iter().enumerate() {
                for (child, g, dst) in [
                    (2 * i, &node.left, &mut a),
                    (2 * i + 1, &node.right, &mut b),
                ] {
                    match (level, leaf(child)) {
                        (0, Some(x)) => gemm_ab(dst, x, g, rows, r, input),
                        (0, None) => {
                            let projected_e1 = &g[..r];
                            dst.chunks_exact_mut(r)
                                .for_each(|row| row.copy_from_slice(projected_e1));
                        }
                        _ => gemm_ab(dst, &current[child], g, rows, r, input),
                    }
                }
                next.push(
                    a.iter()
                        .zip(&b)
                        .map(|(&u, &v)| self.combine * u * v)
                        .collect(),
                );
            }
            current = next;
        }
        out.copy_from_slice(&current[0]);
    }
    fn polynomial_degree(&self) -> Option<u32> {
        Some(self.degree)
    }
    fn backward_into(&self, x: &[T], _features: &[T], grad: &[T], grad_x: &mut [T]) -> bool {
        let rows = x.len() / self.d;
        if self.degree == 1 {
            grad_x.iter_mut().zip(grad).for_each(|(a, &g)| *a += g);
            return true;
        }
        let (r, p) = (self.r, self.degree as usize);
        // The forward again, keeping each node's two projected children (a = u G₁, b = v G₂).
        let mut projections: Vec<Vec<(Vec<T>, Vec<T>)>> = Vec::new();
        let mut current: Vec<Vec<T>> = Vec::new();
        for (level, nodes) in self.levels.iter().enumerate() {
            let input = if level == 0 { self.d } else { r };
            let mut level_projections = Vec::with_capacity(nodes.len());
            let mut next = Vec::with_capacity(nodes.len());
            for (i, node) in nodes.iter().enumerate() {
                let mut pair = [vec![T::ZERO; rows * r], vec![T::ZERO; rows * r]];
                for (side, (child, g)) in [(2 * i, &node.left), (2 * i + 1, &node.right)]
                    .into_iter()
                    .enumerate()
                {
                    let dst = &mut pair[side];
                    match level {
                        0 if child < p => gemm_ab(dst, x, g, rows, r, input),
                        0 => dst
                            .chunks_exact_mut(r)
                            .for_each(|row| row.copy_from_slice(&g[..r])),
                        _ => gemm_ab(dst, &current[child], g, rows, r, input),
                    }
                }
                let [a, b] = pair;
                next.push(
                    a.iter()
                        .zip(&b)
                        .map(|(&u, &v)| self.combine * u * v)
                        .collect(),
                );
                level_projections.push((a, b));
            }
            current = next;
            projections.push(level_projections);
        }
        // Down the tree: y = c·a⊙b gives da = c·g⊙b, db = c·g⊙a, and a child's gradient is
        // da G₁ᵀ (resp. db G₂ᵀ); at the leaves the children are x (or the constant e1).
        let mut grads: Vec<Vec<T>> = vec![grad[..rows * r].to_vec()];
        let mut scratch = vec![T::ZERO; rows * self.d.max(r)];
        for (level, nodes) in self.levels.iter().enumerate().rev() {
            let input = if level == 0 { self.d } else { r };
            let mut child_grads = vec![vec![T::ZERO; rows * input]; 2 * nodes.len()];
            for (i, node) in nodes.iter().enumerate() {
                let (a, b) = &projections[level][i];
                let g = &grads[i];
                for (side, (other, weights)) in
                    [(b, &node.left), (a, &node.right)].into_iter().enumerate()
                {
                    let child = 2 * i + side;
                    if level == 0 && child >= p {
                        continue;
                    }
                    let d_proj: Vec<T> = g
                        .iter()
                        .zip(other)
                        .map(|(&g, &o)| self.combine * g * o)
                        .collect();
                    let out = &mut scratch[..rows * input];
                    gemm_abt(out, &d_proj, weights, rows, input, r, T::ONE);
                    child_grads[child]
                        .iter_mut()
                        .zip(out.iter())
                        .for_each(|(c, &o)| *c += o);
                }
            }
            if level == 0 {
                for g in &child_grads[..p] {
                    grad_x.iter_mut().zip(g).for_each(|(a, &b)| *a += b);
                }
            }
            grads = child_grads;
        }
        true
    }
    /// `2·(p·d·r + (q − 2)·r²)`: `p` leaf projections (padding leaves are free) and two `r×r`
    /// projections per internal node above the leaves.
    fn flops_per_row(&self) -> f64 {
        if self.degree == 1 {
            return 0.0;
        }
        let (p, q) = (self.degree as f64, self.degree.next_power_of_two() as f64);
        let (d, r) = (self.d as f64, self.r as f64);
        2.0 * (p * d * r + (q - 2.0) * r * r)
    }
}
