//! `cargo xtask ci`: what CI runs, in the order that fails fastest, with the time of each step.

use crate::shell::cargo;
use std::time::Instant;

/// One step of CI.
enum Step {
    /// A cargo command line.
    Cargo(&'static [&'static str]),
    /// The Python package built into a venv and its pytest suite (see `python.rs`).
    Python,
    /// OpenMPI and libclang present (poly-dist and `--distributed` build against them).
    Mpi,
}

/// The steps.
const STEPS: &[(&str, Step)] = &[
    ("mpi", Step::Mpi),
    ("fmt", Step::Cargo(&["fmt", "--all", "--", "--check"])),
    (
        "clippy",
        Step::Cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            "polyattn-cli/distributed",
            "--",
            "-D",
            "warnings",
        ]),
    ),
    // The command line as most users build it: without the MPI feature.
    (
        "clippy cli",
        Step::Cargo(&[
            "clippy",
            "-p",
            "polyattn-cli",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    ),
    // Every target with tests (`test = false` ones are skipped, unlike with --all-targets), and
    // the criterion benches once each in test mode; clippy has already compiled the examples.
    (
        "test",
        Step::Cargo(&[
            "test",
            "--workspace",
            "--tests",
            "--features",
            "polyattn-cli/distributed",
            "--bench",
            "attention",
            "--bench",
            "kernels",
        ]),
    ),
    ("doc tests", Step::Cargo(&["test", "--workspace", "--doc"])),
    ("python", Step::Python),
];

/// Runs every step; stops at the first failure. Prints how long each step took.
pub fn run() -> Result<(), String> {
    let start = Instant::now();
    let mut times = Vec::new();
    for (name, step_kind) in STEPS {
        let step = Instant::now();
        let result = match step_kind {
            Step::Cargo(args) => cargo(args),
            Step::Python => crate::python::test(),
            Step::Mpi => crate::mpi::check(),
        };
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
