//! The two dataset constructions of docs/math.md §5.2–§5.3.
//!
//! Matrices are row-major `n × d` `Vec<f64>`. A sample of class 1 (D1) carries one planted large
//! feature at row `k*`, column `i*`; class 0 (D0) does not.

use crate::error::{DataError, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Which class a sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// No planted feature.
    D0,
    /// One planted feature of value b.
    D1,
}

/// Where the random ±1 signs of the value matrix go (R-ratio).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignPlacement {
    /// `A3 = Σ ∘ A` with i.i.d. signs, except that the planted entry keeps sign +1 in D1 (docs/math.md §5.2).
    AllButPlanted,
    /// `A3 = Σ ∘ A` with every sign random, the planted entry included.
    All,
    /// `A3 = A`: no signs (then T is deterministic and every degree separates).
    None,
}

/// One sample of the experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The query inputs A1 (`n × d`).
    pub a1: Vec<f64>,
    /// The key inputs A2 (`n × d`).
    pub a2: Vec<f64>,
    /// The value inputs A3 (`n × d`).
    pub a3: Vec<f64>,
    /// The class the sample was drawn from.
    pub class: Class,
    /// `(k*, i*)` for D1 samples.
    pub planted: Option<(usize, usize)>,
}

/// Dataset R-ratio: all-ones inputs, one entry `b` planted in D1, values with random signs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioDataset {
    /// Sequence length.
    pub n: usize,
    /// Feature dimension.
    pub d: usize,
    /// The planted value b.
    pub b: f64,
    /// Where the random signs of A3 go.
    pub signs: SignPlacement,
}

/// Dataset R-self: i.i.d. ±1 inputs used as queries, keys and values; D1 plants `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfDataset {
    /// Sequence length.
    pub n: usize,
    /// Feature dimension.
    pub d: usize,
    /// The planted value b (non-integer avoids ties).
    pub b: f64,
}

fn check_common(n: usize, d: usize, b: f64) -> Result<()> {
    if n < 2 {
        return Err(DataError::InvalidParameter {
            name: "n",
            value: n.to_string(),
            expected: "n ≥ 2",
        });
    }
    if d == 0 {
        return Err(DataError::InvalidParameter {
            name: "d",
            value: "0".into(),
            expected: "d ≥ 1",
        });
    }
    if !(b.is_finite() && b > 1.0) {
        return Err(DataError::InvalidParameter {
            name: "b",
            value: b.to_string(),
            expected: "a finite planted value b > 1",
        });
    }
    Ok(())
}

/// The sample seed of `(seed, class, index)`: classes and indices draw independent streams.
pub fn sample_seed(seed: u64, class: Class, index: u64) -> u64 {
    let class_bit = match class {
        Class::D0 => 0,
        Class::D1 => 1,
    };
    seed ^ (index.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ (class_bit << 63)
}

/// Draws `(k*, i*)` uniformly.
fn draw_planted(rng: &mut StdRng, n: usize, d: usize) -> (usize, usize) {
    (rng.random_range(0..n), rng.random_range(0..d))
}

/// `count` i.i.d. uniform signs ±1, 64 per random word.
pub fn random_signs(rng: &mut StdRng, count: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let word: u64 = rng.random();
        let take = (count - out.len()).min(64);
        out.extend((0..take).map(|bit| if word >> bit & 1 == 1 { 1.0 } else { -1.0 }));
    }
    out
}

impl RatioDataset {
    /// `ρ = (d − 1 + b)/d`: the score ratio of the planted column to the others.
    pub fn rho(&self) -> f64 {
        (self.d as f64 - 1.0 + self.b) / self.d as f64
    }

    /// `γ = (d − 1 + b²)/(d − 1 + b)`: the planted row's self-score ratio.
    pub fn gamma(&self) -> f64 {
        let d = self.d as f64;
        (d - 1.0 + self.b * self.b) / (d - 1.0 + self.b)
    }

    /// Row sums `r_k` of `A3 = Σ ∘ A`.
    pub fn value_row_sums(&self, planted: Option<(usize, usize)>, signs: &[f64]) -> Vec<f64> {
        let mut sums: Vec<f64> = signs
            .chunks_exact(self.d)
            .map(|row| row.iter().sum())
            .collect();
        if let Some((k, i)) = planted {
            // The planted entry is b·σ instead of σ.
            sums[k] += (self.b - 1.0) * signs[k * self.d + i];
        }
        sums
    }

    /// # Errors
    /// `n < 2`, `d = 0` or `b ≤ 1`.
    pub fn new(n: usize, d: usize, b: f64, signs: SignPlacement) -> Result<Self> {
        check_common(n, d, b)?;
        Ok(RatioDataset { n, d, b, signs })
    }

    /// The planted position and the value signs of a sample, without building matrices: all the
    /// closed form needs. Equal to what [`RatioDataset::sample`] draws for the same seed.
    pub fn draw(&self, class: Class, seed: u64) -> (Option<(usize, usize)>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let planted = match class {
            Class::D0 => None,
            Class::D1 => Some(draw_planted(&mut rng, self.n, self.d)),
        };
        let mut signs = match self.signs {
            SignPlacement::None => vec![1.0; self.n * self.d],
            _ => random_signs(&mut rng, self.n * self.d),
        };
        if let (SignPlacement::AllButPlanted, Some((k, i))) = (self.signs, planted) {
            signs[k * self.d + i] = 1.0;
        }
        (planted, signs)
    }

    /// One sample with `A1 = A2 = A` and `A3 = Σ ∘ A`.
    pub fn sample(&self, class: Class, seed: u64) -> Sample {
        let (planted, signs) = self.draw(class, seed);
        let mut a = vec![1.0; self.n * self.d];
        if let Some((k, i)) = planted {
            a[k * self.d + i] = self.b;
        }
        let a3 = a.iter().zip(&signs).map(|(x, s)| x * s).collect();
        Sample {
            a1: a.clone(),
            a2: a,
            a3,
            class,
            planted,
        }
    }
}

impl SelfDataset {
    /// # Errors
    /// `n < 2`, `d = 0` or `b ≤ 1`.
    pub fn new(n: usize, d: usize, b: f64) -> Result<Self> {
        check_common(n, d, b)?;
        Ok(SelfDataset { n, d, b })
    }

    /// One sample with `A1 = A2 = A3 = A`.
    pub fn sample(&self, class: Class, seed: u64) -> Sample {
        let mut rng = StdRng::seed_from_u64(seed);
        let planted = match class {
            Class::D0 => None,
            Class::D1 => Some(draw_planted(&mut rng, self.n, self.d)),
        };
        let mut a = random_signs(&mut rng, self.n * self.d);
        if let Some((k, i)) = planted {
            a[k * self.d + i] = self.b;
        }
        Sample {
            a1: a.clone(),
            a2: a.clone(),
            a3: a,
            class,
            planted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_samples_follow_the_construction() {
        let ds = RatioDataset::new(50, 4, 16.0, SignPlacement::AllButPlanted).unwrap();
        let s1 = ds.sample(Class::D1, 3);
        let (k, i) = s1.planted.unwrap();
        assert_eq!(s1.a1[k * 4 + i], 16.0);
        assert_eq!(s1.a3[k * 4 + i], 16.0);
        assert_eq!(s1.a1.iter().filter(|&&x| x == 1.0).count(), 199);
        assert!(s1.a3.iter().all(|x| x.abs() == 1.0 || *x == 16.0));
        let s0 = ds.sample(Class::D0, 3);
        assert!(s0.planted.is_none() && s0.a1.iter().all(|&x| x == 1.0));
        // Signs are balanced: 200 draws have mean within 4 standard errors (0.28) of 0.
        assert!(s0.a3.iter().sum::<f64>().abs() < 4.0 * 200f64.sqrt());
        assert_eq!(ds.sample(Class::D1, 3), s1);
    }

    #[test]
    fn self_samples_are_signs_with_one_planted_value() {
        let ds = SelfDataset::new(30, 3, 6.5).unwrap();
        let s = ds.sample(Class::D1, 9);
        let (k, i) = s.planted.unwrap();
        assert_eq!(s.a3[k * 3 + i], 6.5);
        assert_eq!(s.a1.iter().filter(|x| x.abs() == 1.0).count(), 89);
        assert_eq!(s.a1, s.a3);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(RatioDataset::new(1, 4, 16.0, SignPlacement::All).is_err());
        assert!(RatioDataset::new(4, 0, 16.0, SignPlacement::All).is_err());
        assert!(SelfDataset::new(4, 2, 1.0).is_err());
        assert!(SelfDataset::new(4, 2, f64::NAN).is_err());
    }
}
