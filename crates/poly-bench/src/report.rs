//! The main job, `cargo xtask report`: a quick scaling sweep, a thread sweep, the quick
//! reproduction of Song–Xu–Yin and the sketch accuracy study, in one `report.md` with SVGs.

use crate::accuracy::{self, AccuracyPlan};
use crate::methods::MethodName;
use crate::peers::Peer;
use crate::scenario::Method;
use crate::sweeps::{self, ScalingPlan};
use poly_reproduce::{self as reproduction, Grid};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The series of the quick sweep: exact β = 4, softmax, sketched PolySketch, each non-causal and
/// causal, then every compiled-in peer.
pub fn default_series() -> Vec<(Method, bool)> {
    let mut methods: Vec<Method> = [
        MethodName::Poly4,
        MethodName::Softmax,
        MethodName::Polysketch,
    ]
    .iter()
    .map(|m| m.method())
    .collect();
    methods.extend(Peer::available().into_iter().map(Method::Peer));
    methods
        .into_iter()
        .flat_map(|m| [(m, false), (m, true)])
        .collect()
}

/// The quick scaling plan of the report (n up to 16384, 20 s per series).
pub fn quick_scaling(threads: usize) -> ScalingPlan {
    ScalingPlan {
        series: default_series(),
        n_min: 256,
        n_max: 16384,
        d: 64,
        batch_heads: 4,
        threads,
        block: 256,
        repeat: 3,
        budget_s: 20.0,
    }
}

/// Runs everything into `dir` and returns the printed summary.
///
/// # Errors
/// The first failing step, as text.
pub fn run(dir: &Path, threads: usize) -> Result<String, String> {
    let start = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut summary = String::new();
    let mut md = String::from("# polyattn report\n\n");

    eprintln!("[1/4] scaling sweep (n = 256 … 16384)");
    let plan = quick_scaling(threads);
    let scaling = sweeps::scaling(&plan)?;
    sweeps::write_scaling(&scaling, dir)?;
    let machine = &scaling.machine;
    writeln!(
        md,
        "Machine: {} ({} logical CPUs, SIMD {}), {} threads, git {}, {}.\n",
        machine.cpu_model,
        machine.logical_cpus,
        machine.simd_level,
        machine.threads,
        machine.git_revision,
        machine.rustc
    )
    .unwrap();
    md.push_str("## Scaling with sequence length\n\n![scaling](scaling.svg)\n\n");
    md.push_str(&sweeps::scaling_markdown(&scaling));
    summary.push_str("log-log slopes (time vs n, n ≥ 1024):\n");
    for (label, slope) in sweeps::slopes(&scaling.records) {
        let slope = slope.map_or("—".into(), |s| format!("{s:.2}"));
        writeln!(summary, "  {label:<32} {slope}").unwrap();
    }

    eprintln!("[2/4] thread scaling");
    let thread_series: Vec<(Method, bool)> = vec![
        (MethodName::Poly4.method(), true),
        (MethodName::Softmax.method(), false),
        (MethodName::Polysketch.method(), true),
    ];
    let threads_sweep = sweeps::threads(&thread_series, 4096, 8, threads, 3)?;
    sweeps::write_threads(&threads_sweep, dir)?;
    md.push_str("\n## Thread scaling\n\n![threads](threads.svg)\n\n");
    md.push_str(&sweeps::threads_markdown(&threads_sweep));
    for r in threads_sweep
        .records
        .iter()
        .filter(|r| r.scenario.threads == threads)
    {
        let one = threads_sweep.records.iter().find(|o| {
            o.scenario.threads == 1
                && o.scenario.method == r.scenario.method
                && o.scenario.causal == r.scenario.causal
        });
        if let Some(one) = one {
            writeln!(
                summary,
                "{}: {:.2}× on {threads} threads, {:.0}% of the GEMM rate",
                sweeps::series_label(&r.scenario.method, r.scenario.causal),
                one.timing.median / r.timing.median,
                r.percent_of_gemm()
            )
            .unwrap();
        }
    }

    eprintln!("[3/4] reproduction (quick grid)");
    let reproduction_dir = dir.join("reproduction");
    let rep = reproduction::run(Grid::quick()).map_err(|e| e.to_string())?;
    reproduction::report::write_report(&rep, &reproduction_dir)?;
    let headline: Vec<String> = rep
        .closed_form
        .iter()
        .filter(|c| c.dataset.params() == (4096, 16, 16.0))
        .map(|c| format!("{} {:.2}", c.kernel.label(), c.best_threshold_accuracy))
        .collect();
    md.push_str("\n## Expressivity (Song, Xu, Yin): quick reproduction\n\n");
    writeln!(
        md,
        "Best-threshold accuracy separating D0 from D1 (R-ratio, n = 4096, d = 16, b = 16): {}.\n\
         Full report: [reproduction/report.md](reproduction/report.md).\n\n\
         ![accuracy vs degree](reproduction/accuracy_vs_degree.svg)",
        headline.join(", ")
    )
    .unwrap();
    writeln!(
        summary,
        "reproduction accuracy at n = 4096: {}",
        headline.join(", ")
    )
    .unwrap();

    eprintln!("[4/4] sketch accuracy study");
    let plan = AccuracyPlan::quick();
    let cells = accuracy::run(&plan)?;
    accuracy::write(&cells, &plan, dir)?;
    md.push_str("\n## Sketch accuracy\n\n");
    md.push_str("Relative Frobenius error against exact attention (degree 4; FAVOR+ against softmax at 1/√d), `Sum` normalization, q and k LayerNormed.\n");
    md.push_str(&accuracy::markdown(&cells, &plan));
    md.push_str(
        "\n![accuracy, gaussian](accuracy_gaussian.svg)\n![accuracy, planted](accuracy_planted.svg)\n![accuracy, correlated](accuracy_correlated.svg)\n",
    );
    md.push_str(
        "\nErrors near or above 1 mean the sketch carries little of the attention pattern. Signed \
         estimates (the plain tree, TensorSketch, Maclaurin) make `Sum` normalizers cancel, which is \
         why PolySketchFormer self-tensors; FAVOR+ degrades as ‖x‖²/√d grows (√d after LayerNorm).\n",
    );
    for c in cells.iter().filter(|c| c.r == 32) {
        writeln!(
            summary,
            "sketch r = 32, {}, {}: output error {:.3}",
            c.family.name(),
            c.inputs.label(),
            c.output_error
        )
        .unwrap();
    }
    writeln!(
        md,
        "\n---\nGenerated by `cargo xtask report` in {:.0} s.",
        start.elapsed().as_secs_f64()
    )
    .unwrap();
    std::fs::write(dir.join("report.md"), md).map_err(|e| e.to_string())?;
    writeln!(
        summary,
        "wrote {} in {:.0} s",
        dir.join("report.md").display(),
        start.elapsed().as_secs_f64()
    )
    .unwrap();
    Ok(summary)
}
