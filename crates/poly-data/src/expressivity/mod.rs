//! The expressivity experiment of Song, Xu, Yin (2023), "The Expressibility of Polynomial based
//! Attention Scheme" (MATH.md §5): a single-layer polynomial attention network of high degree tells
//! a dataset with one planted large feature (D1) from one without (D0); a low degree cannot.
//!
//! * [`datasets`]: the R-ratio and R-self constructions, every constant a parameter;
//! * [`network`]: the single-layer network `C = D⁻¹ (A1 X A2ᵀ)^β A3 Y`, readout `T = Σ C`, run
//!   through poly-core's exact engine;
//! * [`closed_form`]: R-ratio's readout in O(n·d) per sample;
//! * [`metrics`]: accuracies, ROC-AUC, margins;
//! * [`runner`]: grids over degree, n, (d, b) and kernel.

pub mod closed_form;
pub mod datasets;
pub mod metrics;
pub mod network;
pub mod runner;
