//! `cargo xtask ci`: what CI runs, in the order that fails fastest, with the time of each step.

use crate::shell::cargo;
use std::time::Instant;

/// The steps, each a cargo command line.
const STEPS: &[(&str, &[&str])] = &[
    ("fmt", &["fmt", "--all", "--", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    // Every target with tests (`test = false` ones are skipped, unlike with --all-targets), and
    // the criterion benches once each in test mode; clippy has already compiled the examples.
    (
        "test",
        &[
            "test",
            "--workspace",
            "--tests",
            "--bench",
            "attention",
            "--bench",
            "kernels",
        ],
    ),
    ("doc tests", &["test", "--workspace", "--doc"]),
];

/// Runs every step; stops at the first failure. Prints how long each step took.
pub fn run() -> Result<(), String> {
    let start = Instant::now();
    let mut times = Vec::new();
    for (name, args) in STEPS {
        let step = Instant::now();
        let result = cargo(args);
        times.push((name, step.elapsed().as_secs_f64()));
        result?;
    }
    eprintln!(
        "ci: all checks passed in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    for (name, seconds) in times {
        eprintln!("ci:   {name:<10} {seconds:>6.1} s");
    }
    Ok(())
}
