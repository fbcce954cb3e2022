//! # polyattn: fast, checkable polynomial attention on multicore CPUs
//!
//! The facade of the workspace: it re-exports the crates so that users depend on one package.
//!
//! * [`core`] (poly-core): exact polynomial and softmax attention — streaming, tiled, overflow-proof;
//! * [`data`] (poly-data): `.npy` / `.safetensors` input and output;
//! * [`sketch`] (poly-sketch): sketched linear-time attention.
//!
//! ```
//! use polyattn::{attention, AttentionConfig, Mask, Tensor};
//! let x = Tensor::from_vec([1, 1, 3, 2], vec![1.0f32, 0.0, 0.5, 0.5, 0.0, 1.0])?;
//! let out = attention(x.view(), x.view(), x.view(), &AttentionConfig::polynomial(4).with_mask(Mask::Causal))?;
//! assert_eq!(out.shape(), [1, 1, 3, 2]);
//! # Ok::<(), polyattn::Error>(())
//! ```

pub use poly_core as core;
pub use poly_data as data;
pub use poly_sketch as sketch;

pub use poly_core::{
    AttentionConfig, Element, Error, Kernel, Mask, Normalization, Tensor, TensorRef, Threads,
    attention, reference_attention,
};

/// The README's Rust snippets, compiled and run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeSnippets;
