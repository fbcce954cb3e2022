//! Measurement records: one typed row per measurement (`serde` derive), written as CSV (the `csv`
//! crate) and as JSON with the machine metadata, by [`write_table`] for every table the project
//! writes (scaling, threads, accuracy, memory) and by [`TimeLine::json`] for one-off timings.

use crate::machine::MachineInfo;
use crate::roofline::GemmProbe;
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

/// What `poly-bench time` prints, as one line of JSON: the timing row, its share against the
/// mean of the GEMM probes' median rates, and the best-of-runs share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimeLine {
    /// The scenario, its times and its median share.
    #[serde(flatten)]
    pub row: TimingRow,
    /// The fastest GEMM probe run before or after the cell's runs (GFLOP/s; NaN without probes).
    pub gemm_gflops_best: f64,
    /// The cell's fastest run against `gemm_gflops_best`, in percent. A shared host's
    /// interference only ever slows runs down, so this is the share the two would have had with
    /// both spared, where the median share moves with how much each was hit.
    pub percent_of_gemm_best: f64,
    /// The probe's median rate before the runs (GFLOP/s; NaN without probes).
    pub gemm_gflops_before: f64,
    /// The same after them.
    pub gemm_gflops_after: f64,
    /// `/proc/loadavg` (1, 5 and 15 minutes) before the runs.
    pub load_average_before: String,
    /// The same after them.
    pub load_average_after: String,
    /// Whether the sweeps' rule ([`crate::sweeps::is_noisy`]) marks the cell: the probe drifted
    /// more than 10%, or an exact kernel on 2+ threads passed 100%. `None` without probes.
    pub noisy: Option<bool>,
}

/// What was measured around a timed cell: the GEMM probes before and after the runs when they
/// were taken, and the load average before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct Surroundings {
    /// The GEMM probe before and after the runs.
    pub probes: Option<(GemmProbe, GemmProbe)>,
    /// `/proc/loadavg` before the runs.
    pub load_before: String,
    /// `/proc/loadavg` after them.
    pub load_after: String,
}

impl TimeLine {
    /// `scenario` timed at `timing`, in `around`.
    pub fn new(scenario: Scenario, timing: Timing, around: Surroundings) -> Self {
        let (before, after, best) = match around.probes {
            Some((before, after)) => (
                before.median_gflops(),
                after.median_gflops(),
                before.best_gflops().max(after.best_gflops()),
            ),
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        let record = Record::new(scenario, timing, 0.5 * (before + after));
        let noisy = around
            .probes
            .map(|_| crate::sweeps::is_noisy(&scenario, before, after, record.percent_of_gemm()));
        TimeLine {
            percent_of_gemm_best: 100.0 * record.gflop / timing.min / best,
            gemm_gflops_best: best,
            row: record.row(),
            gemm_gflops_before: before,
            gemm_gflops_after: after,
            load_average_before: around.load_before,
            load_average_after: around.load_after,
            noisy,
        }
    }

    /// The line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a timing line serializes")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Method;
    use poly_core::Kernel;

    #[test]
    fn the_time_line_gives_median_and_best_shares() {
        let scenario = Scenario {
            method: Method::Exact(Kernel::Softmax),
            causal: false,
            n: 1024,
            d: 64,
            batch_heads: 2,
            threads: 2,
            block: 256,
        };
        let gflop = scenario.flops() / 1e9;
        let cell = Timing::from_seconds(vec![0.012, 0.010, 0.011]);
        let n = crate::roofline::GEMM_PROBE_N;
        let gemm = crate::roofline::gemm_flops(n) / 1e9;
        let probe = |rates: [f64; 3]| GemmProbe {
            n,
            timing: Timing::from_seconds(rates.iter().map(|r| gemm / r).collect()),
        };
        // Probe medians of 100 and 50 GFLOP/s; the fastest probe run, 125 GFLOP/s, is after.
        let before = probe([90.0, 100.0, 110.0]);
        let after = probe([40.0, 50.0, 125.0]);
        let around = |probes| Surroundings {
            probes,
            load_before: "0.50 0.40 0.30".into(),
            load_after: "0.60 0.40 0.30".into(),
        };
        let line = TimeLine::new(scenario, cell, around(Some((before, after))));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b;
        assert!(
            close(line.row.gemm_gflops, 75.0),
            "{}",
            line.row.gemm_gflops
        );
        assert!(close(
            line.row.percent_of_gemm,
            100.0 * gflop / 0.011 / 75.0
        ));
        assert!(close(line.gemm_gflops_best, 125.0));
        assert!(close(
            line.percent_of_gemm_best,
            100.0 * gflop / 0.010 / 125.0
        ));
        let json: serde_json::Value = serde_json::from_str(&line.json()).unwrap();
        assert_eq!(json["n"], 1024);
        assert!(close(
            json["percent_of_gemm_best"].as_f64().unwrap(),
            line.percent_of_gemm_best
        ));
        assert_eq!(json["load_average_after"], "0.60 0.40 0.30");
        // The probe halved its rate (100 → 50 GFLOP/s): the cell is marked; a steady one is not.
        assert_eq!(json["noisy"], true);
        let steady = TimeLine::new(scenario, cell, around(Some((before, before))));
        assert_eq!(steady.noisy, Some(false));
        assert!(close(steady.gemm_gflops_after, 100.0));
        // Without probes both shares are unknown (NaN, null in JSON), never a made-up figure.
        let bare = TimeLine::new(scenario, cell, around(None));
        assert!(bare.row.percent_of_gemm.is_nan() && bare.percent_of_gemm_best.is_nan());
        let json: serde_json::Value = serde_json::from_str(&bare.json()).unwrap();
        assert!(json["percent_of_gemm_best"].is_null() && json["noisy"].is_null());
    }
}
