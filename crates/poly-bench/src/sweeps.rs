//! The sweeps behind `cargo xtask scaling` and `cargo xtask threads`: scenarios timed in this
//! process, each against the faer GEMM rate measured here at the same thread count.

use crate::machine::MachineInfo;
use crate::plot::{Axes, Series, line_plot, log_log_slope};
use crate::records::{self, Record};
use crate::roofline::{GEMM_PROBE_N, GEMM_PROBE_RUNS, gemm_rate_gflops};
use crate::scenario::{Method, Scenario};
use crate::timing::WARM_UP_SECONDS;
use indicatif::ProgressBar;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Points below this n are timed but left out of slope fits (fixed costs dominate there).
pub const SLOPE_MIN_N: usize = 1024;

/// A sequence-length sweep.
#[derive(Clone, Debug)]
pub struct ScalingPlan {
    /// Each method with the masks to run it under.
    pub series: Vec<(Method, bool)>,
    /// Smallest n.
    pub n_min: usize,
    /// Largest n.
    pub n_max: usize,
    /// Head dimension.
    pub d: usize,
    /// Number of (batch, head) pairs.
    pub batch_heads: usize,
    /// Threads.
    pub threads: usize,
    /// Block size of the sketched engine.
    pub block: usize,
    /// Timed runs per point.
    pub repeat: usize,
    /// Seconds one series may spend; the next n is skipped once it would exceed them.
    pub budget_s: f64,
}

impl ScalingPlan {
    fn lengths(&self) -> Vec<usize> {
        std::iter::successors(Some(self.n_min), |n| Some(n * 2))
            .take_while(|&n| n <= self.n_max)
            .collect()
    }
}

/// A finished sweep: its records and the GEMM rate they are measured against.
pub struct Sweep {
    /// One record per measured point.
    pub records: Vec<Record>,
    /// Where the sweep ran.
    pub machine: MachineInfo,
    /// What the machine was doing around it.
    pub conditions: Conditions,
}

/// The machine's state around a sweep: the load average before and after, and the GEMM rate
/// after (the records carry the rate before). A rate that drifted more than
/// [`NOISY_DRIFT`] marks the sweep's figures at that thread count noisy.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// `/proc/loadavg` when the sweep began.
    pub load_before: String,
    /// `/proc/loadavg` when it ended.
    pub load_after: String,
    /// `(threads, GFLOP/s)` of the GEMM probe after the sweep.
    pub gemm_after: Vec<(usize, f64)>,
}

/// The relative change of the GEMM rate within a sweep above which its figures are noisy.
pub const NOISY_DRIFT: f64 = 0.10;

/// The rule every sweep and `poly-bench time` mark cells by: the GEMM rate moved more than
/// [`NOISY_DRIFT`] between the probes around the cell, or an exact kernel's share of it passed
/// 100% on two or more threads. Two shares may pass 100% honestly: a sketched kernel's, whose
/// model counts the full `r²`-feature tensor square (docs/math.md §4) while the engine executes
/// the packed `r(r+1)/2` (PolySketch at n = 8192 reads about 125%), and one thread's, whose
/// single-threaded tiles outrun the 2048³ probe on one thread (docs/design.md §8.1).
pub fn is_noisy(
    scenario: &Scenario,
    gemm_before: f64,
    gemm_after: f64,
    percent_of_gemm: f64,
) -> bool {
    (gemm_after / gemm_before - 1.0).abs() > NOISY_DRIFT
        || (!scenario.method.is_linear() && scenario.threads > 1 && percent_of_gemm > 100.0)
}

impl Sweep {
    /// Whether a record cannot be trusted by [`is_noisy`], its GEMM rate drifting to the one
    /// measured after the sweep at its thread count (not at all where none was).
    pub fn is_noisy(&self, r: &Record) -> bool {
        let after = self
            .conditions
            .gemm_after
            .iter()
            .find(|(t, _)| *t == r.scenario.threads)
            .map_or(r.gemm_gflops, |&(_, after)| after);
        is_noisy(&r.scenario, r.gemm_gflops, after, r.percent_of_gemm())
    }

    /// One line on the conditions, and the rule noisy cells follow.
    fn conditions_line(&self) -> String {
        let rates: Vec<String> = self
            .conditions
            .gemm_after
            .iter()
            .map(|(t, after)| {
                let before = self
                    .records
                    .iter()
                    .find(|r| r.scenario.threads == *t)
                    .map_or(f64::NAN, |r| r.gemm_gflops);
                format!("{t} threads {before:.0} → {after:.0}")
            })
            .collect();
        let noisy = self.records.iter().filter(|r| self.is_noisy(r)).count();
        format!(
            "Load average {} before, {} after; faer GEMM GFLOP/s before → after: {}. {}\n",
            self.conditions.load_before,
            self.conditions.load_after,
            rates.join(", "),
            if noisy == 0 {
                "No cell is noisy.".to_owned()
            } else {
                format!(
                    "**{noisy} cell(s) marked noisy** (the GEMM rate drifted more than {:.0}% or \
                     an exact kernel's share on 2+ threads exceeds 100%): rerun on a quiet machine.",
                    100.0 * NOISY_DRIFT
                )
            }
        )
    }
}

pub(crate) fn series_label(method: &Method, causal: bool) -> String {
    format!("{}{}", method.label(), if causal { " causal" } else { "" })
}

/// Times every series over doubling n until its budget runs out. At each n the series still
/// within their budgets run interleaved ([`Scenario::time_interleaved`]), so the columns of a row
/// (one method against another at the same n) saw the same drifts of a shared machine.
///
/// # Errors
/// The first failing scenario's error, as text.
pub fn scaling(plan: &ScalingPlan) -> Result<Sweep, String> {
    let load_before = crate::machine::load_average();
    let gemm = gemm_rate_gflops(GEMM_PROBE_N, plan.threads, GEMM_PROBE_RUNS);
    let lengths = plan.lengths();
    let bar = ProgressBar::new((plan.series.len() * lengths.len()) as u64);
    let mut budgets: Vec<SeriesBudget> = plan
        .series
        .iter()
        .map(|(method, _)| SeriesBudget::new(method.is_linear()))
        .collect();
    let mut per_series: Vec<Vec<Record>> = plan.series.iter().map(|_| Vec::new()).collect();
    for &n in &lengths {
        bar.inc(plan.series.len() as u64);
        let active: Vec<usize> = (0..plan.series.len())
            .filter(|&i| budgets[i].admits_next(plan.repeat, plan.budget_s))
            .collect();
        if active.is_empty() {
            break;
        }
        let scenarios: Vec<Scenario> = active
            .iter()
            .map(|&i| {
                let (method, causal) = plan.series[i];
                Scenario {
                    method,
                    causal,
                    n,
                    d: plan.d,
                    batch_heads: plan.batch_heads,
                    threads: plan.threads,
                    block: plan.block,
                }
            })
            .collect();
        let records = time_records(scenarios, plan.repeat, &format!("at n = {n}"), |_| gemm)?;
        for (&i, record) in active.iter().zip(records) {
            budgets[i].spend(record.timing.median, plan.repeat);
            per_series[i].push(record);
        }
    }
    bar.finish_and_clear();
    let gemm_after = vec![(
        plan.threads,
        gemm_rate_gflops(GEMM_PROBE_N, plan.threads, GEMM_PROBE_RUNS),
    )];
    Ok(Sweep {
        // Series by series, each by n, as the tables and files list them.
        records: per_series.into_iter().flatten().collect(),
        machine: MachineInfo::collect(plan.threads),
        conditions: Conditions {
            load_before,
            load_after: crate::machine::load_average(),
            gemm_after,
        },
    })
}

/// Times `scenarios` interleaved ([`Scenario::time_interleaved`]) into records, each against the
/// GEMM rate `gemm_gflops` gives for it; an error names the series timed and `point`.
fn time_records(
    scenarios: Vec<Scenario>,
    repeat: usize,
    point: &str,
    gemm_gflops: impl Fn(&Scenario) -> f64,
) -> Result<Vec<Record>, String> {
    let timings = Scenario::time_interleaved(&scenarios, repeat).map_err(|e| {
        let mut labels: Vec<String> = scenarios
            .iter()
            .map(|s| series_label(&s.method, s.causal))
            .collect();
        labels.dedup();
        format!("{} {point}: {e}", labels.join(", "))
    })?;
    Ok(scenarios
        .into_iter()
        .zip(timings)
        .map(|(s, t)| Record::new(s, t, gemm_gflops(&s)))
        .collect())
}

/// What one series of a scaling sweep has spent of its time budget, counted from its own runs (a
/// warm-up of at least [`WARM_UP_SECONDS`] and the timed runs at each n), since interleaved series
/// share the clock.
#[derive(Clone, Copy, Debug)]
struct SeriesBudget {
    spent: f64,
    last_median: Option<f64>,
    /// Time per doubling of n: ×2 for linear methods, ×4 for quadratic ones.
    growth: f64,
}

impl SeriesBudget {
    fn new(linear: bool) -> Self {
        SeriesBudget {
            spent: 0.0,
            last_median: None,
            growth: if linear { 2.0 } else { 4.0 },
        }
    }

    /// Whether the next n still fits `budget_s`: its run, predicted from the last median, counted
    /// `repeat + 1` times (the timed runs and about one of warm-up). A series refused once is not
    /// timed again, so nothing it spent changes and it stays refused.
    fn admits_next(&self, repeat: usize, budget_s: f64) -> bool {
        self.last_median.is_none_or(|median| {
            self.spent + median * self.growth * (repeat + 1) as f64 <= budget_s
        })
    }

    /// Counts one n's warm-up and `repeat` timed runs of `median` seconds.
    fn spend(&mut self, median: f64, repeat: usize) {
        self.spent += median.max(WARM_UP_SECONDS) + median * repeat.max(1) as f64;
        self.last_median = Some(median);
    }
}

/// The distinct values of `key` over the records, ascending.
fn distinct(records: &[Record], key: impl Fn(&Record) -> usize) -> Vec<usize> {
    let mut values: Vec<usize> = records.iter().map(key).collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// A markdown table header: the `leading` columns, then one right-aligned column per series.
fn table_header(leading: &[&str], series: &[(String, Vec<&Record>)]) -> String {
    let mut out = String::from("|");
    for column in leading {
        write!(out, " {column} |").unwrap();
    }
    for (label, _) in series {
        write!(out, " {label} |").unwrap();
    }
    out.push_str("\n|");
    out.push_str(&"---:|".repeat(leading.len() + series.len()));
    out.push('\n');
    out
}

/// Records grouped by series label, in first-seen order.
fn by_series(records: &[Record]) -> Vec<(String, Vec<&Record>)> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        let key = series_label(&r.scenario.method, r.scenario.causal);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let g = groups.remove(&k).unwrap_or_default();
            (k, g)
        })
        .collect()
}

/// The fitted log-log slope of each series over n ≥ [`SLOPE_MIN_N`].
pub fn slopes(records: &[Record]) -> Vec<(String, Option<f64>)> {
    by_series(records)
        .into_iter()
        .map(|(label, rs)| {
            let points: Vec<(f64, f64)> = rs
                .iter()
                .filter(|r| r.scenario.n >= SLOPE_MIN_N)
                .map(|r| (r.scenario.n as f64, r.timing.median))
                .collect();
            (label, log_log_slope(&points))
        })
        .collect()
}

/// Markdown: one row per n, one column per series with its time and % of the GEMM rate.
pub fn scaling_markdown(sweep: &Sweep) -> String {
    let series = by_series(&sweep.records);
    let mut out = table_header(&["n"], &series);
    for n in distinct(&sweep.records, |r| r.scenario.n) {
        write!(out, "| {n} |").unwrap();
        for (_, rs) in &series {
            match rs.iter().find(|r| r.scenario.n == n) {
                Some(r) => write!(
                    out,
                    " {:.1} ms [{:.1}–{:.1}] ({:.0}%){} |",
                    r.timing.median * 1e3,
                    r.timing.min * 1e3,
                    r.timing.max * 1e3,
                    r.percent_of_gemm(),
                    if sweep.is_noisy(r) { " noisy" } else { "" }
                )
                .unwrap(),
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out.push_str("| **slope** |");
    for (_, slope) in slopes(&sweep.records) {
        match slope {
            Some(s) => write!(out, " **{s:.2}** |").unwrap(),
            None => out.push_str(" — |"),
        }
    }
    out.push('\n');
    if let Some(r) = sweep.records.first() {
        write!(
            out,
            "\nMedian time [min–max] (model FLOP rate as % of faer's f32 GEMM, {:.0} GFLOP/s on {} threads in the same run); \
             f32, batch×heads = {}, d = d_v = {}, block {}; slopes fitted on log-log axes over n ≥ {SLOPE_MIN_N}; \
             — = skipped by the per-series time budget.\n",
            r.gemm_gflops, r.scenario.threads, r.scenario.batch_heads, r.scenario.d, r.scenario.block
        )
        .unwrap();
    }
    out.push_str(&sweep.conditions_line());
    out
}

/// Writes `scaling.{csv,json,md,svg}` into `dir`.
///
/// # Errors
/// A message naming the file that failed.
pub fn write_scaling(sweep: &Sweep, dir: &Path) -> Result<(), String> {
    records::write(dir, "scaling", &sweep.records, &sweep.machine)?;
    std::fs::write(dir.join("scaling.md"), scaling_markdown(sweep)).map_err(|e| e.to_string())?;
    let slopes = slopes(&sweep.records);
    let series: Vec<Series> = by_series(&sweep.records)
        .into_iter()
        .zip(slopes)
        .map(|((label, rs), (_, slope))| {
            let slope = slope.map_or(String::new(), |s| format!(" (slope {s:.2})"));
            (
                format!("{label}{slope}"),
                rs.iter()
                    .map(|r| (r.scenario.n as f64, r.timing.median))
                    .collect(),
            )
        })
        .collect();
    let axes = Axes {
        title: "Time vs sequence length (log-log)",
        x: "n (tokens)",
        y: "seconds (median)",
        log_x: true,
        log_y: true,
    };
    line_plot(&dir.join("scaling.svg"), &axes, &series, &[])
}

/// Times each `(method, causal)` at every thread count `1..=max_threads`, the counts interleaved
/// round by round (see [`Scenario::time_interleaved`]).
///
/// # Errors
/// The first failing scenario's error, as text.
pub fn threads(
    series: &[(Method, bool)],
    n: usize,
    batch_heads: usize,
    max_threads: usize,
    repeat: usize,
) -> Result<Sweep, String> {
    let load_before = crate::machine::load_average();
    let counts: Vec<usize> = (1..=max_threads).collect();
    let gemm: Vec<f64> = counts
        .iter()
        .map(|&t| gemm_rate_gflops(GEMM_PROBE_N, t, GEMM_PROBE_RUNS))
        .collect();
    let bar = ProgressBar::new((series.len() * counts.len()) as u64);
    let mut records = Vec::new();
    for &(method, causal) in series {
        // The thread counts of a series interleaved: their speedups are the sweep's figures.
        let scenarios: Vec<Scenario> = counts
            .iter()
            .map(|&threads| Scenario {
                method,
                causal,
                n,
                d: 64,
                batch_heads,
                threads,
                block: 256,
            })
            .collect();
        let point = format!("at 1 … {max_threads} threads");
        // `counts` are 1 ..= max_threads, so a thread count's GEMM rate sits at `threads − 1`.
        records.extend(time_records(scenarios, repeat, &point, |s| {
            gemm[s.threads - 1]
        })?);
        bar.inc(counts.len() as u64);
    }
    bar.finish_and_clear();
    let gemm_after = counts
        .iter()
        .map(|&t| (t, gemm_rate_gflops(GEMM_PROBE_N, t, GEMM_PROBE_RUNS)))
        .collect();
    Ok(Sweep {
        records,
        machine: MachineInfo::collect(max_threads),
        conditions: Conditions {
            load_before,
            load_after: crate::machine::load_average(),
            gemm_after,
        },
    })
}

/// Speedup of each series over its one-thread time, and the GEMM's own speedup.
pub fn threads_markdown(sweep: &Sweep) -> String {
    let series = by_series(&sweep.records);
    let mut out = table_header(&["threads", "faer GEMM GFLOP/s"], &series);
    for t in distinct(&sweep.records, |r| r.scenario.threads) {
        let gemm = sweep
            .records
            .iter()
            .find(|r| r.scenario.threads == t)
            .map_or(f64::NAN, |r| r.gemm_gflops);
        write!(out, "| {t} | {gemm:.0} |").unwrap();
        for (_, rs) in &series {
            let one = rs.iter().find(|r| r.scenario.threads == 1);
            match (one, rs.iter().find(|r| r.scenario.threads == t)) {
                (Some(one), Some(r)) => write!(
                    out,
                    " {:.1} ms [{:.1}–{:.1}], {:.2}×{} |",
                    r.timing.median * 1e3,
                    r.timing.min * 1e3,
                    r.timing.max * 1e3,
                    one.timing.median / r.timing.median,
                    if sweep.is_noisy(r) || sweep.is_noisy(one) {
                        " noisy"
                    } else {
                        ""
                    }
                )
                .unwrap(),
                _ => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    if let Some(r) = sweep.records.first() {
        write!(
            out,
            "\nMedian time [min–max] and speedup over one thread; f32, n = {}, batch×heads = {}, d = 64.\n",
            r.scenario.n, r.scenario.batch_heads
        )
        .unwrap();
    }
    out.push_str(&sweep.conditions_line());
    out
}

/// Writes `threads.{csv,json,md,svg}` into `dir`.
///
/// # Errors
/// A message naming the file that failed.
pub fn write_threads(sweep: &Sweep, dir: &Path) -> Result<(), String> {
    records::write(dir, "threads", &sweep.records, &sweep.machine)?;
    std::fs::write(dir.join("threads.md"), threads_markdown(sweep)).map_err(|e| e.to_string())?;
    let series: Vec<Series> = by_series(&sweep.records)
        .into_iter()
        .map(|(label, rs)| {
            let one = rs
                .iter()
                .find(|r| r.scenario.threads == 1)
                .map_or(f64::NAN, |r| r.timing.median);
            (
                label,
                rs.iter()
                    .map(|r| (r.scenario.threads as f64, one / r.timing.median))
                    .collect(),
            )
        })
        .collect();
    let max = sweep.machine.threads as f64;
    let ideal = [(
        "ideal (linear speedup)".to_owned(),
        vec![(1.0, 1.0), (max, max)],
    )];
    let axes = Axes {
        title: "Speedup over one thread",
        x: "threads",
        y: "speedup",
        log_x: false,
        log_y: false,
    };
    line_plot(&dir.join("threads.svg"), &axes, &series, &ideal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::Timing;

    fn record(method: Method, causal: bool, n: usize, threads: usize, seconds: f64) -> Record {
        Record {
            scenario: Scenario {
                method,
                causal,
                n,
                d: 64,
                batch_heads: 2,
                threads,
                block: 256,
            },
            timing: Timing::from_seconds(vec![seconds]),
            gflop: 1.0,
            gemm_gflops: 10.0,
        }
    }

    #[test]
    fn slopes_tables_and_files_follow_the_records() {
        let exact = crate::methods::MethodName::Poly4.method();
        let sketch = crate::methods::MethodName::Polysketch.method();
        let mut records = Vec::new();
        for k in 8..14 {
            let n = 1usize << k;
            records.push(record(exact, true, n, 2, 1e-9 * (n * n) as f64));
            records.push(record(sketch, true, n, 2, 1e-6 * n as f64));
        }
        let slopes = slopes(&records);
        assert_eq!(slopes.len(), 2);
        assert!((slopes[0].1.unwrap() - 2.0).abs() < 1e-9, "{slopes:?}");
        assert!((slopes[1].1.unwrap() - 1.0).abs() < 1e-9, "{slopes:?}");
        let machine = MachineInfo::collect(2);
        let sweep = Sweep {
            records,
            machine,
            conditions: Conditions::default(),
        };
        let md = scaling_markdown(&sweep);
        assert!(
            md.contains("| 8192 |") && md.contains("**2.00**") && md.contains("**1.00**"),
            "{md}"
        );
        let dir = tempfile::tempdir().unwrap();
        write_scaling(&sweep, dir.path()).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("scaling.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 12);
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("scaling.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["records"].as_array().unwrap().len(), 12);
        assert!(json["machine"]["git_revision"].is_string());
    }

    #[test]
    fn thread_table_reports_speedup_over_one_thread() {
        let exact = crate::methods::MethodName::Poly4.method();
        let records = vec![
            record(exact, true, 4096, 1, 2.0),
            record(exact, true, 4096, 2, 1.0),
        ];
        let mut sweep = Sweep {
            records,
            machine: MachineInfo::collect(2),
            conditions: Conditions {
                load_before: "0.1 0.1 0.1".into(),
                load_after: "0.2 0.1 0.1".into(),
                gemm_after: vec![(1, 10.0), (2, 10.0)],
            },
        };
        let md = threads_markdown(&sweep);
        assert!(md.contains("2.00×") && md.contains("1.00×"), "{md}");
        assert!(
            !md.contains("noisy |") && md.contains("No cell is noisy"),
            "{md}"
        );
        // A GEMM rate that moved 20% during the sweep marks that thread count's cells.
        sweep.conditions.gemm_after[1].1 = sweep.records[1].gemm_gflops * 1.2;
        let md = threads_markdown(&sweep);
        assert!(
            md.contains("1.00× noisy") || md.contains("2.00× noisy"),
            "{md}"
        );
        assert!(md.contains("marked noisy"), "{md}");
        // Above the GEMM rate: impossible for an exact kernel, whose model is what it executes;
        // a sketched kernel's model counts more than the packed features it executes.
        let sketch = crate::methods::MethodName::Polysketch.method();
        sweep.conditions.gemm_after[1].1 = sweep.records[1].gemm_gflops;
        let fast = |method| record(method, true, 4096, 2, 0.05); // 20 GFLOP/s against 10
        assert!(sweep.is_noisy(&fast(exact)));
        assert!(!sweep.is_noisy(&fast(sketch)));
        assert!(!sweep.is_noisy(&record(exact, true, 4096, 2, 1.0)));
        // One thread's tiles may outrun the 2048³ probe on one thread.
        sweep.conditions.gemm_after[0].1 = sweep.records[0].gemm_gflops;
        assert!(!sweep.is_noisy(&record(exact, true, 4096, 1, 0.05)));
    }

    #[test]
    fn scaling_plan_doubles_within_bounds() {
        let plan = ScalingPlan {
            series: vec![],
            n_min: 256,
            n_max: 3000,
            d: 64,
            batch_heads: 1,
            threads: 1,
            block: 256,
            repeat: 1,
            budget_s: 1.0,
        };
        assert_eq!(plan.lengths(), vec![256, 512, 1024, 2048]);
    }

    #[test]
    fn a_series_stops_once_its_next_point_would_overrun_its_budget() {
        let (repeat, budget) = (1, 10.0);
        let mut quadratic = SeriesBudget::new(false);
        let mut linear = SeriesBudget::new(true);
        // The first point is always admitted; a fast run still counts a whole warm-up.
        assert!(quadratic.admits_next(repeat, budget) && linear.admits_next(repeat, budget));
        linear.spend(0.01, 3);
        assert!((linear.spent - (WARM_UP_SECONDS + 0.03)).abs() < 1e-12);
        // 1 s runs after 2 s spent (warm-up 1 s + one run): the next n predicts 4 s (quadratic)
        // or 2 s (linear), counted twice (warm-up and the run).
        for b in [&mut quadratic, &mut linear] {
            b.spent = 0.0;
            b.spend(1.0, repeat);
            assert_eq!(b.spent, 2.0);
        }
        assert!(quadratic.admits_next(repeat, budget)); // 2 + 8 = 10: within
        quadratic.spend(1.0, repeat); // spent 4
        assert!(!quadratic.admits_next(repeat, budget)); // 4 + 8 > 10
        // A refused series spends nothing more, so asking again gives the same answer.
        assert!(!quadratic.admits_next(repeat, budget));
        linear.spend(1.0, repeat); // spent 4
        assert!(linear.admits_next(repeat, budget)); // 4 + 4 ≤ 10
    }
}
