//! The element types poly-dist computes in and sends: f32 and f64.

use mpi::traits::Equivalence;

/// An element type of the engines that MPI can send as is.
pub trait DistElement: poly_core::Element + poly_sketch::SketchElement + Equivalence {}

impl DistElement for f32 {}
impl DistElement for f64 {}
