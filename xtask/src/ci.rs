//! `cargo xtask ci`: what CI runs, in the order that fails fastest.

use crate::shell::cargo;

pub fn run() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // --all-targets runs the criterion benches once each in test mode.
    cargo(&["test", "--workspace", "--all-targets"])?;
    cargo(&["test", "--workspace", "--doc"])?;
    eprintln!("ci: all checks passed");
    Ok(())
}
