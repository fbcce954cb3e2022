//! `polyattn reproduce`: the Song–Xu–Yin expressivity experiment as a runnable report
//! (results.csv, report.md, SVG plots). The grids are in [`grid`], the outputs in [`report`] and
//! [`plots`].

pub mod grid;
pub mod plots;
pub mod report;

pub use grid::{Grid, Reproduction, run};
