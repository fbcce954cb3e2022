//! Building and running the release `poly-bench` binary that every measuring subcommand uses.
//! xtask defines none of poly-bench's options: it forwards them, so the two cannot drift.

use crate::shell::{build_release_binary, results_dir, run};
use std::path::PathBuf;

/// The one flag xtask reads from a forwarded command line: build poly-bench with candle's peers.
const CANDLE_FLAG: &str = "--candle";

/// Builds `poly-bench` in release mode (with the `candle` peers if asked) and returns its path.
pub fn build(candle: bool) -> Result<PathBuf, String> {
    let mut args = vec!["-p", "poly-bench", "--bin", "poly-bench"];
    if candle {
        args.extend(["--features", "candle"]);
    }
    build_release_binary(&args, "poly-bench")
}

/// Runs `poly-bench <subcommand> <forwarded> --out <target>/polyattn/<subcommand>` (no `--out`
/// when the forwarded arguments give one, or ask for help). `--candle` among them builds the
/// candle peers in and is not passed on.
pub fn forward(subcommand: &str, forwarded: &[String]) -> Result<(), String> {
    let candle = forwarded.iter().any(|a| a == CANDLE_FLAG);
    let binary = build(candle)?;
    let mut args = vec![subcommand.to_owned()];
    args.extend(forwarded.iter().filter(|a| *a != CANDLE_FLAG).cloned());
    let has = |flag: &str| {
        forwarded
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    if !has("--out") && !has("--help") && !has("-h") {
        let out = results_dir()?.join(subcommand);
        args.extend(["--out".to_owned(), out.to_string_lossy().into_owned()]);
    }
    run(&binary, &args)
}
