//! The feature maps the CLI offers, built the same way by `attend` and `features`, so that
//! `features` writes exactly the φ that attention uses for the same flags and seed.

use super::{CliError, KernelArg, KernelParams};
use poly_core::Element;
use poly_sketch::{ExactDegree2, FeatureMap, PolySketch, SelfTensoredSketch, SketchScale};

/// Default sketch size `r`.
pub const DEFAULT_SKETCH_DIM: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// Even degrees: the non-negative self-tensored sketch (as PolySketchFormer uses it);
    /// odd degrees: the plain Gaussian tree.
    PolySketch,
    Exact2,
}

/// A fully specified feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub kind: MapKind,
    pub degree: u32,
    pub sketch_dim: usize,
    pub seed: u64,
}

impl MapSpec {
    /// The map named by a `--kernel`/`--map` value and its flags.
    pub fn from_flags(kind: KernelArg, params: &KernelParams) -> Result<Self, CliError> {
        let KernelParams {
            degree,
            sketch_dim,
            seed,
        } = *params;
        let kind = match kind {
            KernelArg::Polysketch => MapKind::PolySketch,
            KernelArg::Exact2 => MapKind::Exact2,
            other => {
                return Err(CliError::Usage(format!(
                    "{}: not available in this version; the feature maps are polysketch and exact2",
                    super::kernel_name(other)
                )));
            }
        };
        if kind == MapKind::Exact2 {
            if let Some(d) = degree.filter(|&d| d != 2) {
                return Err(CliError::Usage(format!(
                    "exact2 features are exactly degree 2, not --degree {d}"
                )));
            }
            if sketch_dim.is_some() || seed.is_some() {
                return Err(CliError::Usage(
                    "exact2 features are deterministic: --sketch-dim and --seed do not apply"
                        .into(),
                ));
            }
        }
        Ok(MapSpec {
            kind,
            degree: if kind == MapKind::Exact2 {
                2
            } else {
                degree.unwrap_or(4)
            },
            sketch_dim: sketch_dim.unwrap_or(DEFAULT_SKETCH_DIM),
            seed: seed.unwrap_or(0),
        })
    }

    /// Draws the map for inputs of dimension `d`.
    pub fn build<T: Element>(&self, d: usize) -> Result<Box<dyn FeatureMap<T>>, poly_core::Error> {
        Ok(match self.kind {
            MapKind::Exact2 => Box::new(ExactDegree2::new(d)),
            MapKind::PolySketch if self.degree >= 2 && self.degree.is_multiple_of(2) => {
                Box::new(SelfTensoredSketch::<T>::new(
                    d,
                    self.degree,
                    self.sketch_dim,
                    self.seed,
                    SketchScale::Unbiased,
                )?)
            }
            MapKind::PolySketch => Box::new(PolySketch::<T>::new(
                d,
                self.degree,
                self.sketch_dim,
                self.seed,
                SketchScale::Unbiased,
            )?),
        })
    }
}
