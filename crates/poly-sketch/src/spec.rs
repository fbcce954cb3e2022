//! Feature maps by name: one place that turns (family, degree, size, seed) into a map, shared by
//! the CLI (`attend` and `features` must build the same φ), the benchmarks and the tests.

use crate::SketchElement;
use crate::{
    ExactDegree2, Favor, FeatureMap, PolySketch, RandomMaclaurin, SelfTensoredSketch, SketchScale,
    TensorSketch,
};
use poly_core::{Element, Error, Result};

/// A family of feature maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MapKind {
    /// PolySketch as PolySketchFormer uses it: the non-negative self-tensored sketch for even
    /// degrees (sketch size `r`, `r(r+1)/2` packed features), the Gaussian tree for odd ones.
    PolySketch,
    /// The plain Gaussian tree at every degree (signed weights).
    PolySketchTree,
    /// TensorSketch: CountSketches combined by FFT.
    TensorSketch,
    /// Random Maclaurin: products of Rademacher projections.
    RandomMaclaurin,
    /// FAVOR+ for softmax; the degree does not apply.
    Favor,
    /// Exact `x ⊗ x`: degree 2 only, deterministic.
    Exact2,
}

impl MapKind {
    /// Every family, in the order of tables.
    pub const ALL: [MapKind; 6] = [
        MapKind::PolySketch,
        MapKind::PolySketchTree,
        MapKind::TensorSketch,
        MapKind::RandomMaclaurin,
        MapKind::Favor,
        MapKind::Exact2,
    ];

    /// The CLI's name.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::PolySketch => "polysketch",
            MapKind::PolySketchTree => "polysketch-tree",
            MapKind::TensorSketch => "tensorsketch",
            MapKind::RandomMaclaurin => "maclaurin",
            MapKind::Favor => "favor",
            MapKind::Exact2 => "exact2",
        }
    }

    /// Whether the map is random (takes a size and a seed).
    pub fn is_random(self) -> bool {
        self != MapKind::Exact2
    }
}

/// A fully specified feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapSpec {
    /// The family.
    pub kind: MapKind,
    /// The polynomial degree (ignored by FAVOR+; must be 2 for exact2).
    pub degree: u32,
    /// `r` for PolySketch (the self-tensored map has `r(r+1)/2` features), `D` for TensorSketch
    /// and Random Maclaurin, `m` for FAVOR+; unused by exact2.
    pub sketch_dim: usize,
    /// Seed of the random draw.
    pub seed: u64,
}

impl MapSpec {
    /// The map `kind` of `degree` with sketch size `sketch_dim`, drawn from `seed`.
    pub const fn new(kind: MapKind, degree: u32, sketch_dim: usize, seed: u64) -> Self {
        MapSpec {
            kind,
            degree,
            sketch_dim,
            seed,
        }
    }

    /// Draws the map for inputs of dimension `d`.
    ///
    /// # Errors
    /// The constructors' errors; exact2 with a degree other than 2.
    ///
    /// # Example
    /// ```
    /// use poly_sketch::{MapKind, MapSpec};
    /// // The CLI's `--kernel polysketch --degree 4 --sketch-dim 16 --seed 3`: self-tensored.
    /// let phi = MapSpec::new(MapKind::PolySketch, 4, 16, 3).build::<f32>(8)?;
    /// assert_eq!(phi.feature_dim(), 16 * 17 / 2);
    /// let features = phi.map_rows(&[0.25f32; 2 * 8])?; // two rows of d = 8
    /// assert_eq!(features.len(), 2 * phi.feature_dim());
    /// # Ok::<(), poly_core::Error>(())
    /// ```
    pub fn build<T: SketchElement>(&self, d: usize) -> Result<Box<dyn FeatureMap<T>>> {
        T::build_map_compiled(self, d)
    }

    /// [`MapSpec::build`] for one element type (see [`crate::SketchElement`]).
    pub(crate) fn build_generic<T: Element>(&self, d: usize) -> Result<Box<dyn FeatureMap<T>>> {
        let MapSpec {
            kind,
            degree,
            sketch_dim: r,
            seed,
        } = *self;
        Ok(match kind {
            MapKind::PolySketch if degree >= 2 && degree.is_multiple_of(2) => Box::new(
                SelfTensoredSketch::<T>::new(d, degree, r, seed, SketchScale::Unbiased)?,
            ),
            MapKind::PolySketch | MapKind::PolySketchTree => Box::new(PolySketch::<T>::new(
                d,
                degree,
                r,
                seed,
                SketchScale::Unbiased,
            )?),
            MapKind::TensorSketch => Box::new(TensorSketch::<T>::new(d, degree, r, seed)?),
            MapKind::RandomMaclaurin => Box::new(RandomMaclaurin::<T>::new(d, degree, r, seed)?),
            MapKind::Favor => Box::new(Favor::<T>::new(d, r, seed)?),
            MapKind::Exact2 if degree == 2 => Box::new(ExactDegree2::new(d)?),
            MapKind::Exact2 => {
                return Err(Error::InvalidParameter {
                    name: "degree",
                    value: degree.to_string(),
                    expected: "2: exact2 features are exactly degree 2",
                });
            }
        })
    }
}
