//! Peak resident memory of `polyattn attend` as n doubles (batch × heads = 1, d = d_v = 64, f32),
//! `cargo xtask memory`. A streaming engine grows linearly in n (inputs, output, per-task tiles);
//! materializing the scores would add 4·n² bytes (16 GiB at n = 65536).

use crate::machine::MachineInfo;
use crate::records::{AttendTiming, MemoryRow, write_table};
use poly_data::synthetic::uniform;
use std::path::Path;
use std::process::Command;

const DIM: usize = 64;

/// Runs `binary attend --repeat 1` (the `polyattn` command) on inputs of n = 8192 … `max_n` written
/// into `dir`, and writes `dir/memory.{csv,json}`.
///
/// # Errors
/// `max_n` not a power of two ≥ 8192, a file that cannot be written, or a failed run.
pub fn run(binary: &Path, max_n: usize, dir: &Path) -> Result<(), String> {
    if max_n < 8192 || !max_n.is_power_of_two() {
        return Err(format!("--max-n {max_n}: expected a power of two ≥ 8192"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut rows = Vec::new();
    println!(
        "{:>7} {:>7} {:>14} {:>14} {:>10}",
        "n", "causal", "max RSS MiB", "4·n² MiB", "seconds"
    );
    let mut n = 8192;
    while n <= max_n {
        let paths: Vec<String> = ["q", "k", "v"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let path = dir.join(format!("{name}_{n}.npy"));
                let data = uniform::<f32>([1, 1, n, DIM], -1.0, 1.0, i as u64 + 1)
                    .map_err(|e| e.to_string())?;
                poly_data::write_npy(&path, &[n, DIM], data.as_slice())
                    .map_err(|e| e.to_string())?;
                Ok(path.to_string_lossy().into_owned())
            })
            .collect::<Result<_, String>>()?;
        for causal in [false, true] {
            let mut cmd = Command::new(binary);
            cmd.args([
                "attend", "--q", &paths[0], "--k", &paths[1], "--v", &paths[2], "--repeat", "1",
            ]);
            if causal {
                cmd.arg("--causal");
            }
            let out = cmd.output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let record: AttendTiming = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("bad JSON from polyattn: {e}"))?;
            let row = MemoryRow {
                n,
                causal,
                max_rss_bytes: record
                    .max_rss_bytes
                    .ok_or("polyattn reported no max_rss_bytes")?,
                seconds_median: record.seconds_median,
                gflops: record.gflops,
                n_squared_bytes: 4 * (n as u64) * (n as u64),
            };
            println!(
                "{n:>7} {causal:>7} {:>14.1} {:>14.0} {:>10.2}",
                row.max_rss_bytes as f64 / 1048576.0,
                row.n_squared_bytes as f64 / 1048576.0,
                row.seconds_median
            );
            rows.push(row);
        }
        for name in ["q", "k", "v"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}_{n}.npy")));
        }
        n *= 2;
    }
    write_table(dir, "memory", &rows, &MachineInfo::collect(1))?;
    println!("wrote {}/memory.{{csv,json}}", dir.display());
    Ok(())
}
