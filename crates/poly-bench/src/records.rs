//! Measurement records: one typed row per measurement (`serde` derive), written as CSV (the `csv`
//! crate) and as JSON with the machine metadata, by [`write_table`] for every table the project
//! writes (scaling, threads, accuracy, memory) and by [`TimingRow::json_line`] for one-off timings.

use crate::machine::MachineInfo;
use crate::scenario::Scenario;
use crate::timing::Timing;
use serde::Serialize;
use std::path::Path;

/// One timed scenario.
#[derive(Clone, Debug)]
pub struct Record {
    /// What was timed.
    pub scenario: Scenario,
    /// How long it took.
    pub timing: Timing,
    /// Model GFLOP of the scenario.
    pub gflop: f64,
    /// The faer f32 GEMM rate measured in the same run at the same thread count (GFLOP/s).
    pub gemm_gflops: f64,
}

impl Record {
    /// `scenario` timed at `timing`, with its model FLOPs, against `gemm_gflops`.
    pub fn new(scenario: Scenario, timing: Timing, gemm_gflops: f64) -> Self {
        Record {
            scenario,
            timing,
            gflop: scenario.flops() / 1e9,
            gemm_gflops,
        }
    }

    /// The model FLOP rate (GFLOP/s).
    pub fn gflops(&self) -> f64 {
        self.gflop / self.timing.median
    }

    /// The model FLOP rate as a percentage of the GEMM rate.
    pub fn percent_of_gemm(&self) -> f64 {
        100.0 * self.gflops() / self.gemm_gflops
    }

    /// The record as a row of the CSV / JSON schema.
    pub fn row(&self) -> TimingRow {
        let s = &self.scenario;
        TimingRow {
            method: s.method.label(),
            causal: s.causal,
            n: s.n,
            d: s.d,
            batch_heads: s.batch_heads,
            threads: s.threads,
            block: s.block,
            seconds_median: self.timing.median,
            seconds_min: self.timing.min,
            seconds_max: self.timing.max,
            runs: self.timing.runs,
            gflop: self.gflop,
            gflops: self.gflops(),
            gemm_gflops: self.gemm_gflops,
            percent_of_gemm: self.percent_of_gemm(),
        }
    }
}

/// The schema of a timing: the scenario, its times and rates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimingRow {
    /// The method's label (`poly4`, `softmax`, `polysketch4_r32`, …).
    pub method: String,
    /// Whether the causal mask was applied.
    pub causal: bool,
    /// Sequence length.
    pub n: usize,
    /// Head dimension (`d = d_v`).
    pub d: usize,
    /// Number of (batch, head) pairs.
    pub batch_heads: usize,
    /// Threads of the run.
    pub threads: usize,
    /// Block size of the sketched engine.
    pub block: usize,
    /// Median seconds per run.
    pub seconds_median: f64,
    /// Fastest run.
    pub seconds_min: f64,
    /// Slowest run.
    pub seconds_max: f64,
    /// Timed runs.
    pub runs: usize,
    /// Model GFLOP per run.
    pub gflop: f64,
    /// Model GFLOP per second at the median.
    pub gflops: f64,
    /// faer's f32 GEMM rate on the same threads in the same run (NaN when not measured).
    pub gemm_gflops: f64,
    /// `gflops` as a percentage of `gemm_gflops`.
    pub percent_of_gemm: f64,
}

impl TimingRow {
    /// The row as one line of JSON (what `poly-bench time` prints).
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a timing row serializes")
    }
}

/// The line `polyattn attend --repeat N` prints: what ran and how fast.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct AttendTiming {
    /// The `--kernel` value.
    pub kernel: String,
    /// The polynomial degree (none for softmax and FAVOR+).
    pub degree: Option<u32>,
    /// Whether the causal mask was applied.
    pub causal: bool,
    /// `[batch, heads, n_q, n_k, d, d_v]`.
    pub shape: [usize; 6],
    /// `f32` or `f64`.
    pub dtype: String,
    /// Threads of the computation.
    pub threads: usize,
    /// Median seconds of the computation alone (no I/O).
    pub seconds_median: f64,
    /// Fastest run.
    pub seconds_min: f64,
    /// Every timed run's seconds, in the order they ran (after the warm-up), so that the first
    /// runs can be set against later ones.
    #[serde(default)]
    pub seconds_each: Vec<f64>,
    /// Model GFLOP (docs/math.md §2.2 / §4).
    pub gflop: f64,
    /// Model GFLOP per second at the median.
    pub gflops: f64,
    /// Peak resident memory of the process, where the OS reports it.
    pub max_rss_bytes: Option<u64>,
}

/// One row of the memory sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryRow {
    /// Sequence length.
    pub n: usize,
    /// Whether the causal mask was applied.
    pub causal: bool,
    /// Peak resident memory of `polyattn attend`.
    pub max_rss_bytes: u64,
    /// Median seconds of the computation.
    pub seconds_median: f64,
    /// Model GFLOP per second.
    pub gflops: f64,
    /// What f32 scores of one head would take if materialized: `4·n²`.
    pub n_squared_bytes: u64,
}

/// A JSON document: the machine, then the rows.
#[derive(Serialize)]
struct Document<'a, R> {
    machine: &'a MachineInfo,
    records: &'a [R],
}

/// The rows as CSV text, with a header line named after the fields.
///
/// # Errors
/// A message if a row does not serialize to a flat CSV record.
pub fn to_csv<R: Serialize>(rows: &[R]) -> Result<String, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row).map_err(|e| format!("CSV: {e}"))?;
    }
    let bytes = writer.into_inner().map_err(|e| format!("CSV: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("CSV: {e}"))
}

/// Writes `name.csv` (the rows) and `name.json` (the machine and the rows) into `dir`.
///
/// # Errors
/// A message naming the file that could not be written.
pub fn write_table<R: Serialize>(
    dir: &Path,
    name: &str,
    rows: &[R],
    machine: &MachineInfo,
) -> Result<(), String> {
    let write = |file: String, text: String| {
        std::fs::write(dir.join(&file), text).map_err(|e| format!("{file}: {e}"))
    };
    write(format!("{name}.csv"), to_csv(rows)?)?;
    let json = serde_json::to_string_pretty(&Document {
        machine,
        records: rows,
    })
    .map_err(|e| format!("{name}.json: {e}"))?;
    write(format!("{name}.json"), json)
}

/// Writes the timing records as `name.csv` and `name.json` into `dir`.
///
/// # Errors
/// A message naming the file that could not be written.
pub fn write(
    dir: &Path,
    name: &str,
    records: &[Record],
    machine: &MachineInfo,
) -> Result<(), String> {
    let rows: Vec<TimingRow> = records.iter().map(Record::row).collect();
    write_table(dir, name, &rows, machine)
}
