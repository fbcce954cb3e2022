//! The fuzz targets on the committed corpus, in an ordinary test run (the smoke of the fuzzing
//! set-up that `cargo xtask ci` runs): every seed (valid and invalid files, command lines of every
//! kernel) and every regression (inputs that once crashed, hung or exhausted the machine) must
//! return, without a panic, within seconds, and the seeds must reach both the accepting and the
//! refusing path of each target.

use polyattn_fuzz::{Outcome, cli_args, npy, safetensors};
use std::path::Path;
use std::time::{Duration, Instant};

fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect()
}

fn replay(target: fn(&[u8]) -> Outcome, name: &str) {
    let mut seen = Vec::new();
    for dir in [format!("seeds/{name}"), format!("regressions/{name}")] {
        if !Path::new(env!("CARGO_MANIFEST_DIR")).join(&dir).exists() {
            continue;
        }
        for (file, input) in files(&dir) {
            let start = Instant::now();
            let outcome = target(&input);
            // A hang would show as a slow input; these are all tiny.
            let took = start.elapsed();
            assert!(
                took < Duration::from_secs(5),
                "{dir}/{file}: slow input ({took:?})"
            );
            if dir.starts_with("seeds") {
                seen.push(outcome);
            }
        }
    }
    assert!(
        seen.contains(&Outcome::Accepted),
        "{name}: no seed is accepted"
    );
    assert!(
        seen.contains(&Outcome::Refused),
        "{name}: no seed is refused"
    );
}

/// One test: the targets set the process-wide memory budget (and a fuzzed `--max-memory`
/// changes it for a moment), so they must not run concurrently.
#[test]
fn every_target_on_its_corpus() {
    replay(npy, "npy");
    replay(safetensors, "safetensors");
    replay(cli_args, "cli_args");
}
