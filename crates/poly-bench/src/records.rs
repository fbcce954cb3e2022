//! Measurement records, written as CSV and JSON with the machine metadata.

use crate::machine::MachineInfo;
use crate::scenario::Scenario;
use crate::timing::Timing;
use std::fmt::Write as _;
use std::path::Path;

/// One timed scenario.
#[derive(Clone, Debug)]
pub struct Record {
    pub scenario: Scenario,
    pub timing: Timing,
    /// Model GFLOP of the scenario.
    pub gflop: f64,
    /// The faer f32 GEMM rate measured in the same run at the same thread count (GFLOP/s).
    pub gemm_gflops: f64,
}

impl Record {
    pub fn gflops(&self) -> f64 {
        self.gflop / self.timing.median
    }

    /// The model FLOP rate as a percentage of the GEMM rate.
    pub fn percent_of_gemm(&self) -> f64 {
        100.0 * self.gflops() / self.gemm_gflops
    }
}

const HEADER: &str = "method,causal,n,d,batch_heads,threads,block,seconds_median,seconds_min,seconds_max,runs,gflop,gflops,gemm_gflops,percent_of_gemm";

/// The records as CSV (one header line).
pub fn to_csv(records: &[Record]) -> String {
    let mut out = format!("{HEADER}\n");
    for r in records {
        let s = &r.scenario;
        writeln!(
            out,
            "{},{},{},{},{},{},{},{:.6e},{:.6e},{:.6e},{},{:.4},{:.3},{:.3},{:.2}",
            s.method.label(),
            s.causal,
            s.n,
            s.d,
            s.batch_heads,
            s.threads,
            s.block,
            r.timing.median,
            r.timing.min,
            r.timing.max,
            r.timing.runs,
            r.gflop,
            r.gflops(),
            r.gemm_gflops,
            r.percent_of_gemm()
        )
        .expect("writing to a String");
    }
    out
}

/// The records and the machine metadata as one JSON document.
pub fn to_json(records: &[Record], machine: &MachineInfo) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let s = &r.scenario;
            serde_json::json!({
                "method": s.method.label(), "causal": s.causal, "n": s.n, "d": s.d,
                "batch_heads": s.batch_heads, "threads": s.threads, "block": s.block,
                "seconds_median": r.timing.median, "seconds_min": r.timing.min,
                "seconds_max": r.timing.max, "runs": r.timing.runs, "gflop": r.gflop,
                "gflops": r.gflops(), "gemm_gflops": r.gemm_gflops,
                "percent_of_gemm": r.percent_of_gemm(),
            })
        })
        .collect();
    serde_json::json!({ "machine": machine.to_json(), "records": rows })
}

/// Writes `name.csv` and `name.json` into `dir`.
///
/// # Errors
/// A message naming the file that could not be written.
pub fn write(
    dir: &Path,
    name: &str,
    records: &[Record],
    machine: &MachineInfo,
) -> Result<(), String> {
    let write = |file: String, text: String| {
        std::fs::write(dir.join(&file), text).map_err(|e| format!("{file}: {e}"))
    };
    write(format!("{name}.csv"), to_csv(records))?;
    write(
        format!("{name}.json"),
        serde_json::to_string_pretty(&to_json(records, machine)).expect("JSON"),
    )
}
