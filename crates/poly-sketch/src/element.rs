//! The element types of the sketched engines, with their entry points compiled once here.
//!
//! Generic functions are compiled again in every crate that calls them with a concrete type
//! (optimized builds share no generic code across crates). [`linear_attention`] and
//! [`MapSpec::build`] are therefore thin: they call non-generic functions of this crate, one per
//! element type, which hold the engine and the feature maps.
//!
//! [`linear_attention`]: crate::linear_attention

use crate::feature_map::FeatureMap;
use crate::linear::{LinearAttentionConfig, linear_attention_generic};
use crate::spec::MapSpec;
use poly_core::{Element, Result, Tensor, TensorRef};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `f32` or `f64`: an [`Element`] that the sketched engines are compiled for.
pub trait SketchElement: Element + sealed::Sealed {
    /// [`crate::linear_attention`] for this type (call that instead).
    #[doc(hidden)]
    fn linear_attention_compiled(
        q: TensorRef<'_, Self>,
        k: TensorRef<'_, Self>,
        v: TensorRef<'_, Self>,
        map: &dyn FeatureMap<Self>,
        cfg: &LinearAttentionConfig,
    ) -> Result<Tensor<Self>>;

    /// [`MapSpec::build`] for this type (call that instead).
    #[doc(hidden)]
    fn build_map_compiled(spec: &MapSpec, d: usize) -> Result<Box<dyn FeatureMap<Self>>>;
}

macro_rules! sketch_element {
    ($t:ty) => {
        impl SketchElement for $t {
            fn linear_attention_compiled(
                q: TensorRef<'_, $t>,
                k: TensorRef<'_, $t>,
                v: TensorRef<'_, $t>,
                map: &dyn FeatureMap<$t>,
                cfg: &LinearAttentionConfig,
            ) -> Result<Tensor<$t>> {
                linear_attention_generic(q, k, v, map, cfg)
            }

            fn build_map_compiled(spec: &MapSpec, d: usize) -> Result<Box<dyn FeatureMap<$t>>> {
                spec.build_generic(d)
            }
        }
    };
}

sketch_element!(f32);
sketch_element!(f64);
