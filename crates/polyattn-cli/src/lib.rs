//! The library half of the `polyattn` command: its argument definitions and their translation
//! into engine configurations, shared by the binary (src/main.rs) and the fuzz target that feeds
//! it arbitrary command lines (fuzz/). Not a stable API.

// The flags' doc comments are the `--help` text; the Rust items behind them are internal.
#[allow(missing_docs)]
pub mod cli;
