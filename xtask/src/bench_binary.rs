//! Building and running the release `poly-bench` binary that every measuring subcommand uses.

use crate::shell::{cargo, results_dir, workspace_root};
use std::path::PathBuf;
use std::process::Command;

/// Builds `poly-bench` in release mode (with the `candle` peers if asked) and returns its path.
pub fn build(candle: bool) -> Result<PathBuf, String> {
    let mut args = vec![
        "build",
        "--release",
        "-p",
        "poly-bench",
        "--bin",
        "poly-bench",
    ];
    if candle {
        args.extend(["--features", "candle"]);
    }
    cargo(&args)?;
    Ok(workspace_root().join("target/release/poly-bench"))
}

/// Runs `poly-bench <args> --out target/polyattn/<dir>`; an error if it fails.
pub fn run(candle: bool, args: &[&str], dir: &str) -> Result<(), String> {
    let binary = build(candle)?;
    let out = results_dir()?.join(dir);
    let out = out.to_string_lossy().into_owned();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--out", &out]);
    eprintln!("$ poly-bench {}", full.join(" "));
    let status = Command::new(&binary)
        .args(&full)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("poly-bench {} failed ({status})", args.join(" ")))
    }
}
