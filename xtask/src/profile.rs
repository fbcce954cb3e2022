//! `cargo xtask profile <method>`: instruction counts per function under valgrind's callgrind
//! (repeatable across runs, unlike timings on a shared machine), and `perf stat` where the
//! machine exposes hardware counters.

use crate::bench_binary;
use crate::shell::results_dir;
use std::process::Command;

/// How many functions of the callgrind listing go into the summary.
const TOP: usize = 15;

pub fn run(method: &str, n: usize, causal: bool) -> Result<(), String> {
    let binary = bench_binary::build(false)?;
    let dir = results_dir()?.join("profile");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tag = format!("{method}_n{n}{}", if causal { "_causal" } else { "" });
    let n_arg = n.to_string();
    // One thread, one head group, one timed run: the counts describe the kernels, not rayon.
    let mut scenario = vec![
        "time",
        "--method",
        method,
        "--n",
        &n_arg,
        "--threads",
        "1",
        "--batch-heads",
        "1",
        "--repeat",
        "1",
    ];
    if causal {
        scenario.push("--causal");
    }
    let callgrind_out = dir.join(format!("callgrind.{tag}.out"));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", callgrind_out.display()))
        .arg(&binary)
        .args(&scenario)
        .status()
        .map_err(|e| format!("cannot run valgrind (install it to profile): {e}"))?;
    if !status.success() {
        return Err(format!("valgrind failed ({status})"));
    }
    let annotate = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg(&callgrind_out)
        .output()
        .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
    let listing = String::from_utf8_lossy(&annotate.stdout).into_owned();
    let mut summary = format!("# Instruction counts: {tag} (1 thread, batch×heads = 1)\n\n");
    let mut in_table = false;
    let mut shown = 0;
    for line in listing.lines() {
        if line.contains("PROGRAM TOTALS") {
            summary.push_str(&format!("{}\n\n", line.trim()));
        }
        if line.contains("file:function") {
            in_table = true;
            continue;
        }
        if in_table && line.starts_with("--") {
            continue;
        }
        // The function table ends at its first blank line (per-file annotations follow).
        if in_table && (line.trim().is_empty() || shown == TOP) {
            break;
        }
        if in_table {
            summary.push_str(line.trim());
            summary.push('\n');
            shown += 1;
        }
    }
    summary.push_str(
        "\n(`???:0x…` entries are faer's hand-written GEMM micro-kernels, which carry no symbols.)\n",
    );
    let perf = Command::new("perf")
        .args(["stat", "-e", "instructions,cycles", "--"])
        .arg(&binary)
        .args(&scenario)
        .output();
    match perf {
        Ok(o)
            if o.status.success()
                && !String::from_utf8_lossy(&o.stderr).contains("not supported") =>
        {
            summary.push_str("\n## perf stat\n\n");
            summary.push_str(&String::from_utf8_lossy(&o.stderr));
        }
        _ => {
            summary.push_str("\nperf stat: hardware counters are not available on this machine.\n")
        }
    }
    let path = dir.join(format!("{tag}.md"));
    std::fs::write(&path, &summary).map_err(|e| e.to_string())?;
    println!("{summary}");
    println!("wrote {} and {}", path.display(), callgrind_out.display());
    Ok(())
}
