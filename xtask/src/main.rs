//! `cargo xtask <command>`: the project's automation, one subcommand per task.
//! Results go under `<target dir>/polyattn/` (cargo's target directory, `CARGO_TARGET_DIR`
//! included). The measuring subcommands build the release `poly-bench` binary (crates/poly-bench)
//! and forward their arguments to it, so that nothing is timed in a debug build and the options
//! are defined once, in poly-bench.

mod bench_binary;
mod ci;
mod distributed;
mod fuzz;
mod mpi;
mod profile;
mod python;
mod shell;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "polyattn project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Arguments passed through to `poly-bench <subcommand>` unchanged (`--help` shows them).
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: quick scaling sweep, thread scaling, quick reproduction and the sketch
    /// accuracy study in <target>/polyattn/report/ (report.md + SVGs). `--candle` adds candle's
    /// CPU attention as peers. Other options: `cargo xtask report --help`. 75–90 s of
    /// measurements on 2 cores once built (73 and 76 s measured 2026-12-08, 91 s 2026-12-07).
    Report(Forwarded),
    /// Time vs n (doubling) for exact β = 4, softmax and sketched PolySketch, causal and not,
    /// with fitted log-log slopes and % of the GEMM rate (`--quick`, `--max-n`, `--budget-s`,
    /// `--candle`, …: `cargo xtask scaling --help`). Up to 90 s per series (`--budget-s`).
    Scaling(Forwarded),
    /// Speedup from one thread to all of them (`cargo xtask threads --help`). About 10 s on 2
    /// cores once built.
    Threads(Forwarded),
    /// The model-shaped variants: sliding window w = 512 against n (share of the GEMM rate over
    /// in-band pairs), GQA g = 4 against H_kv = H, and the KV-cache decode step on 1 and all
    /// threads with K+V bytes per second against memcpy (`--quick`: about 10 s once built; the
    /// full sizes about 30 s, measured 2026-12-07).
    Variants(Forwarded),
    /// The exact backward against the forward and the GEMM rate (`--n 1024,4096`). About 20 s
    /// once built.
    Gradients(Forwarded),
    /// Strong and weak scaling of the distributed engines (ring, state scan) under mpirun with
    /// 1, 2 and 4 ranks, bytes sent against the model, and the cost model's speedup at P = 8 …
    /// 1024 (`--quick`). Needs OpenMPI (`cargo xtask mpi-check`). About 2 minutes on 2 cores
    /// (1 min 38 s measured, the benchmark's release build included).
    Distributed(Forwarded),
    /// Checks that OpenMPI and libclang are installed (what poly-dist needs to build), and says
    /// how to install what is missing.
    MpiCheck,
    /// The sketch accuracy study: relative error vs sketch size, each family (`--quick`: about
    /// 30 s once built).
    Accuracy(Forwarded),
    /// Peak memory (max RSS) of `polyattn attend` as n grows, to show it has no n² term
    /// (`--max-n`). About 40 s once built (42 s measured 2026-12-08).
    Memory(Forwarded),
    /// valgrind callgrind instruction counts of one scenario (poly4, softmax, polysketch, …) on
    /// one thread and one head.
    Profile {
        /// A `poly-bench time --method` value.
        method: String,
        #[arg(long, default_value_t = 2048)]
        n: usize,
        #[arg(long)]
        causal: bool,
    },
    /// fmt --check, clippy -D warnings, every test (benches once in test mode, the fuzz targets
    /// on their corpus), doc tests, and the Python package's pytest suite (in a venv it creates
    /// under the target directory: maturin, numpy, pytest from PyPI).
    Ci,
    /// Each fuzz target (the .npy and .safetensors loaders, the CLI's argument parsing) under
    /// AFL++ for --seconds; fails on any crash or hang. Installs cargo-afl on first use.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (npy, safetensors, cli_args).
        #[arg(long)]
        target: Option<String>,
    },
    /// The Python package against PyTorch (SDPA and hand-written polynomial attention) and the
    /// Python-call overhead against the engine alone, on a release build (python/bench/peers.py;
    /// `POLYATTN_VENV` selects a venv that has torch; `--help` lists the script's options).
    PyBench(Forwarded),
    /// The criterion benches (kernels vs the GEMM rate, power kernel vs memcpy, feature maps,
    /// decoding); arguments go to criterion (`--quick` for a fast indicative pass).
    Bench(Forwarded),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(f) => bench_binary::forward("report", &f.args),
        Command::Scaling(f) => bench_binary::forward("scaling", &f.args),
        Command::Threads(f) => bench_binary::forward("threads", &f.args),
        Command::Accuracy(f) => bench_binary::forward("accuracy", &f.args),
        Command::Variants(f) => bench_binary::forward("variants", &f.args),
        Command::Gradients(f) => bench_binary::forward("gradients", &f.args),
        Command::Memory(f) => memory(&f.args),
        Command::Distributed(f) => distributed::run(&f.args),
        Command::MpiCheck => mpi::check(),
        Command::Profile { method, n, causal } => profile::run(&method, n, causal),
        Command::Ci => ci::run(),
        Command::PyBench(f) => python::bench(&f.args),
        Command::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
        Command::Bench(f) => {
            let mut args = vec!["bench", "--bench", "attention", "--bench", "kernels", "--"];
            args.extend(f.args.iter().map(String::as_str));
            shell::cargo(&args)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Builds the `polyattn` command and hands it to `poly-bench memory`, which measures it.
fn memory(forwarded: &[String]) -> Result<(), String> {
    let polyattn =
        shell::build_release_binary(&["-p", "polyattn-cli", "--bin", "polyattn"], "polyattn")?;
    let mut args = forwarded.to_vec();
    args.extend([
        "--polyattn".to_owned(),
        polyattn.to_string_lossy().into_owned(),
    ]);
    bench_binary::forward("memory", &args)
}
