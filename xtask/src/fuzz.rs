//! `cargo xtask fuzz [--seconds N] [--target NAME]`: every coverage-guided fuzz target of fuzz/
//! under AFL++ (through cargo-afl, installed on first use) for N seconds from its committed seed
//! corpus; exits non-zero on any crash or hang. Findings stay in <target>/polyattn/fuzz/<name>/.

use crate::shell::{build_with, cargo, cargo_program, results_dir, workspace_root};
use std::fmt::Write as _;
use std::process::Command;

/// (binary, corpus folder under fuzz/seeds/).
const TARGETS: [(&str, &str); 3] = [
    ("fuzz-npy", "npy"),
    ("fuzz-safetensors", "safetensors"),
    ("fuzz-cli-args", "cli_args"),
];

/// A run per target; the summary goes to stdout and <target>/polyattn/fuzz/summary.md.
pub fn run(seconds: u64, only: Option<&str>) -> Result<(), String> {
    if let Some(name) = only
        && !TARGETS.iter().any(|(_, corpus)| *corpus == name)
    {
        return Err(format!(
            "--target {name}: expected npy, safetensors or cli_args"
        ));
    }
    ensure_cargo_afl()?;
    let dir = results_dir()?.join("fuzz");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut summary = format!(
        "# Fuzzing: {seconds} s per target (AFL++ via cargo-afl)\n\n\
         | target | executions | execs/s | corpus | crashes | hangs |\n|---|---:|---:|---:|---:|---:|\n"
    );
    let mut failures = Vec::new();
    for (bin, corpus) in TARGETS {
        if only.is_some_and(|o| o != corpus) {
            continue;
        }
        let exe = build_with(
            &["afl", "build"],
            &["-p", "polyattn-fuzz", "--features", "afl", "--bin", bin],
            bin,
        )?;
        let out = dir.join(corpus);
        let _ = std::fs::remove_dir_all(&out);
        let seeds = workspace_root().join("fuzz/seeds").join(corpus);
        eprintln!(
            "$ cargo afl fuzz -i {} -o {} -V {seconds} {}",
            seeds.display(),
            out.display(),
            exe.display()
        );
        let status = Command::new(cargo_program())
            .args(["afl", "fuzz", "-i"])
            .arg(&seeds)
            .arg("-o")
            .arg(&out)
            .args(["-V", &seconds.to_string(), "-t", "5000", "--"])
            .arg(&exe)
            .env("AFL_NO_UI", "1")
            .env("AFL_SKIP_CPUFREQ", "1")
            .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
            .env("AFL_NO_AFFINITY", "1")
            .status()
            .map_err(|e| format!("cannot run cargo afl fuzz: {e}"))?;
        if !status.success() {
            return Err(format!("cargo afl fuzz of {bin} failed ({status})"));
        }
        let stats = std::fs::read_to_string(out.join("default/fuzzer_stats"))
            .map_err(|e| format!("{}: {e}", out.join("default/fuzzer_stats").display()))?;
        let field = |key: &str| -> String {
            stats
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| "?".into())
        };
        let (crashes, hangs) = (field("saved_crashes"), field("saved_hangs"));
        writeln!(
            summary,
            "| {corpus} | {} | {} | {} | {crashes} | {hangs} |",
            field("execs_done"),
            field("execs_per_sec"),
            field("corpus_count"),
        )
        .expect("writing to a String");
        if crashes != "0" || hangs != "0" {
            failures.push(format!(
                "{corpus}: {crashes} crashes, {hangs} hangs (inputs in {})",
                out.join("default").display()
            ));
        }
    }
    std::fs::write(dir.join("summary.md"), &summary).map_err(|e| e.to_string())?;
    println!("{summary}");
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzzing found problems: {}", failures.join("; ")))
    }
}

/// cargo-afl (which builds its own AFL++) on first use.
fn ensure_cargo_afl() -> Result<(), String> {
    let present = Command::new(cargo_program())
        .args(["afl", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("cargo-afl is not installed: installing it (builds AFL++, a few minutes)");
    cargo(&["install", "cargo-afl", "--locked"])
}
