//! Running cargo and other programs from xtask, with the command echoed first, and finding what
//! cargo built through cargo itself (so `CARGO_TARGET_DIR` and `--target-dir` are honoured).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// The cargo that runs xtask (`$CARGO`), else `cargo`.
pub fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The target directory cargo uses for this workspace (`cargo metadata`).
pub fn target_dir() -> Result<PathBuf, String> {
    let out = Command::new(cargo_program())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed ({})", out.status));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed bad JSON: {e}"))?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata gave no target_directory".into())
}

/// `<target dir>/polyattn/`, created if needed: where every result goes.
pub fn results_dir() -> Result<PathBuf, String> {
    let dir = target_dir()?.join("polyattn");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs `cargo <args>` in the workspace root; an error if it fails.
pub fn cargo(args: &[&str]) -> Result<(), String> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo_program())
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// Runs `cargo build --release <args>` and returns the path of the executable named `bin`, as
/// cargo reports it (`--message-format=json`).
pub fn build_release_binary(args: &[&str], bin: &str) -> Result<PathBuf, String> {
    build_with(&["build"], args, bin)
}

/// `cargo <command…> --release --message-format=json <args>` (`command` is `build`, or `afl
/// build` for instrumented binaries): the path of the executable named `bin`.
pub fn build_with(command: &[&str], args: &[&str], bin: &str) -> Result<PathBuf, String> {
    let mut full = command.to_vec();
    full.extend(["--release", "--message-format=json-render-diagnostics"]);
    full.extend_from_slice(args);
    eprintln!("$ cargo {}", full.join(" "));
    let out = Command::new(cargo_program())
        .args(&full)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo {}` failed ({})",
            full.join(" "),
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo built no executable named {bin}"))
}

/// Runs `program args`, echoed; an error naming it if it cannot start or fails.
pub fn run(program: &std::path::Path, args: &[String]) -> Result<(), String> {
    let name = program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    eprintln!("$ {name} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} {} failed ({status})", args.join(" ")))
    }
}
