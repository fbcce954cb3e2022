//! Fuzz targets as plain functions: each takes arbitrary bytes and must return, never panic,
//! hang or allocate beyond [`BUDGET`]. The AFL++ binaries (src/bin, feature `afl`) call them
//! under the fuzzer; tests/replay.rs runs the committed seed corpus and every saved finding
//! through them in an ordinary `cargo test`.
//!
//! A target reports what it found ([`Outcome`]) so that the replay test can check that the seeds
//! reach both the accepting and the rejecting paths.

use clap::Parser;
use std::path::Path;

/// The memory budget the targets run under: small, so that a size the input claims is refused
/// by the resource policy rather than allocated.
pub const BUDGET: u64 = 64 << 20;

/// What one input did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input was accepted (a tensor, a configuration).
    Accepted,
    /// The input was refused with a typed error.
    Refused,
}

fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        // Rendering the message is part of the path under test.
        Err(e) => {
            std::hint::black_box(e.to_string());
            Outcome::Refused
        }
    }
}

fn set_budget() {
    poly_core::set_memory_budget(Some(BUDGET)).expect("a non-zero budget");
}

/// The `.npy` loader on a file's bytes.
pub fn npy(data: &[u8]) -> Outcome {
    set_budget();
    // What the CLI does next with a loaded tensor is part of the path.
    let loaded = poly_data::read_npy_bytes(data, Path::new("fuzz.npy"));
    if let Ok(t) = &loaded {
        std::hint::black_box(t.to_bhnd::<f32>(Path::new("fuzz.npy")).is_ok());
    }
    outcome(loaded)
}

/// The `.safetensors` loader on a file's bytes (tensors q, k, v).
pub fn safetensors(data: &[u8]) -> Outcome {
    set_budget();
    outcome(poly_data::read_safetensors_bytes(
        data,
        &["q", "k", "v"],
        Path::new("fuzz.safetensors"),
    ))
}

/// A command line (arguments separated by NUL bytes) through clap and the translation into an
/// engine configuration and feature map, without reading files.
pub fn cli_args(data: &[u8]) -> Outcome {
    set_budget();
    let text = String::from_utf8_lossy(data);
    let args = std::iter::once("polyattn").chain(text.split('\0'));
    match polyattn_cli::cli::Cli::try_parse_from(args) {
        // Usage errors are rendered as the binary would render them.
        Err(e) => outcome::<(), _>(Err(e.render())),
        Ok(cli) => {
            // A fuzzed --max-memory may lower the budget, never raise it above the harness's.
            let budget = cli.max_memory.map_or(BUDGET, |m| m.min(BUDGET));
            poly_core::set_memory_budget(Some(budget)).expect("a parsed budget is ≥ 1 byte");
            let result = polyattn_cli::cli::check_without_files(&cli, 8);
            set_budget();
            outcome(result)
        }
    }
}
