//! Command-line definitions (clap) and dispatch to the subcommands.

mod attend;
mod decode;
mod distributed;
mod error;
mod features;
mod inputs;
mod maps;
mod reproduce;

pub use error::CliError;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "polyattn",
    version,
    about = "Exact and sketched polynomial attention on CPUs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Largest single buffer the run may allocate from input sizes (bytes, or with a K, M, G or T
    /// suffix; default: half of physical memory). Outputs, feature matrices, sketches and file
    /// contents over it are refused before they are allocated.
    #[arg(long, global = true, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
}

/// `4096`, `512K`, `64M`, `2G`, `1T` (powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown unit {c:?}: use K, M, G or T")),
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count (e.g. 4096, 512M, 2G)"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{text:?}: expected 1 byte to 16 EiB"))
}

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Attention of Q against K and V, read from .npy files or one .safetensors file.
    Attend(AttendArgs),
    /// Write the feature matrix φ(X) of a sketch, the same φ attention uses for the same seed.
    Features(FeaturesArgs),
    /// Reproduce Song, Xu, Yin (2023): high-degree polynomial attention separates D0 from D1.
    Reproduce(ReproduceArgs),
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// The feature map (polysketch: self-tensored for even degrees, the Gaussian tree for odd).
    #[arg(long, value_enum)]
    pub map: KernelArg,
    #[command(flatten)]
    pub params: KernelParams,
    /// Input rows: .npy whose last axis is the dimension d.
    #[arg(long, value_name = "X.npy")]
    pub x: PathBuf,
    /// Output: .npy of shape [rows, m].
    #[arg(long, value_name = "F.npy")]
    pub out: PathBuf,
    /// Computation dtype (default: X's).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
}

/// The degree and sketch flags shared by `attend` and `features`.
#[derive(Args, Debug)]
pub struct KernelParams {
    /// Polynomial degree (default 4; exact2 is degree 2; favor approximates softmax).
    #[arg(long)]
    pub degree: Option<u32>,
    /// Sketch size: r for polysketch (default 32; even degrees use r(r+1)/2 features), the
    /// feature count for tensorsketch, maclaurin and favor (default 256).
    #[arg(long)]
    pub sketch_dim: Option<usize>,
    /// Seed of the sketch's random draw (sketched kernels; default 0).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl DtypeArg {
    /// The computation dtype: the flag if given, else the dtype stored in the input file.
    pub fn resolve(flag: Option<DtypeArg>, file_dtype: &'static str) -> &'static str {
        match flag {
            Some(DtypeArg::F32) => "f32",
            Some(DtypeArg::F64) => "f64",
            None => file_dtype,
        }
    }
}

/// The command-line spelling of a kernel.
pub fn kernel_name(kernel: KernelArg) -> String {
    kernel
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// The quick grid (under a minute on 2 cores) instead of the full one (under 15 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Where results.csv, report.md and the SVG plots go.
    #[arg(long, default_value = "target/polyattn/reproduction")]
    pub out: PathBuf,
    /// Instead of the grid, train X by gradient descent for several degrees, a softmax and a
    /// linear twin (beyond the paper): training.csv, training.md and training_accuracy.svg.
    #[arg(long, conflicts_with = "quick")]
    pub train: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KernelArg {
    Poly,
    Softmax,
    Polysketch,
    Tensorsketch,
    Maclaurin,
    Favor,
    Exact2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormArg {
    Sum,
    OnePlusSum,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShardsArg {
    Contiguous,
    Zigzag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScanArg {
    Ordered,
    Tree,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    F32,
    F64,
}

#[derive(Args, Debug)]
pub struct AttendArgs {
    /// Queries: .npy (float16, float32 or float64; float16 computes in f32) with shape [n, d],
    /// [h, n, d] or [b, h, n, d].
    #[arg(long, value_name = "Q.npy", requires_all = ["k", "v"], conflicts_with = "input")]
    pub q: Option<PathBuf>,
    /// Keys: .npy, same leading dimensions and head dim as q.
    #[arg(long, value_name = "K.npy", conflicts_with = "input")]
    pub k: Option<PathBuf>,
    /// Values: .npy, same leading dimensions and length as k.
    #[arg(long, value_name = "V.npy", conflicts_with = "input")]
    pub v: Option<PathBuf>,
    /// One .safetensors file holding tensors q, k and v (F16, BF16, F32 or F64; instead of
    /// --q/--k/--v).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write the output here (.npy, q's leading dimensions and v's last, computation dtype).
    #[arg(long, value_name = "O.npy")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = KernelArg::Poly)]
    pub kernel: KernelArg,
    #[command(flatten)]
    pub params: KernelParams,
    #[arg(long, value_enum, default_value_t = NormArg::Sum)]
    pub norm: NormArg,
    /// The constant c of one-plus-sum: o = Σ w v / (c + Σ w) (default 1; only with
    /// --norm one-plus-sum).
    #[arg(long, allow_negative_numbers = true)]
    pub norm_bias: Option<f64>,
    /// Multiplies q·k (default 1 for poly, 1/sqrt(d) for softmax).
    #[arg(long, allow_negative_numbers = true)]
    pub scale: Option<f64>,
    /// LayerNorm q and k over the head dimension (no affine) before scoring.
    #[arg(long)]
    pub layernorm: bool,
    /// Key j is visible to query i iff j <= i + (n_k - n_q).
    #[arg(long)]
    pub causal: bool,
    /// Block size of the block-causal algorithm (sketched kernels; default 256).
    #[arg(long)]
    pub block: Option<usize>,
    /// Exact weights on diagonal blocks (sketched kernels).
    #[arg(long)]
    pub local_exact: bool,
    /// Sliding window of W keys (exact kernels): with --causal query i sees keys i'-W < j <= i',
    /// without it |i' - j| < W (i' = i + n_k - n_q). Costs O(n·W).
    #[arg(long, value_name = "W")]
    pub window: Option<usize>,
    /// Packed sequences on the sequence axis: their lengths, summing to n; each query sees only
    /// keys of its own sequence (sketched kernels: the state restarts at each sequence).
    #[arg(long, value_name = "L1,L2,...", value_delimiter = ',')]
    pub seq_lens: Option<Vec<usize>>,
    /// Decode after a prompt of P tokens: the prompt fills a KV cache (exact kernels) or one
    /// decoding state per k/v head (sketched), then each later token is appended and attended
    /// alone. Writes the rows of tokens P.. (q's leading dimensions, n - P rows), equal to those
    /// of --causal; needs --causal and n_q = n_k.
    #[arg(
        long,
        value_name = "P",
        requires = "causal",
        conflicts_with = "seq_lens"
    )]
    pub decode: Option<usize>,
    /// Run as one rank of `mpirun -np P polyattn attend ... --distributed` (a polyattn built
    /// with `--features distributed`): each rank reads only its shard of the sequence axis from
    /// the .npy or .safetensors inputs, the ranks compute together (exact kernels by ring attention, sketched
    /// ones by a state scan), and each writes its rows of the one --out file. Needs --out and
    /// n_q = n_k; not with --seq-lens, --decode or --repeat.
    #[arg(long)]
    pub distributed: bool,
    /// How the sequence is split over the ranks (with --distributed; default: zigzag for the
    /// exact kernels with --causal, which balances their work, contiguous otherwise; the
    /// sketched kernels need contiguous).
    #[arg(long, value_enum, requires = "distributed")]
    pub shards: Option<ShardsArg>,
    /// How the sketched kernels' ranks combine their states (with --distributed): ordered
    /// (rank to rank, bit-identical to one process when shards fall on its chunk grid) or tree
    /// (MPI_Exscan, log P steps). Default: ordered.
    #[arg(long, value_enum, requires = "distributed")]
    pub scan: Option<ScanArg>,
    /// Worker threads (default: RAYON_NUM_THREADS or all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Computation dtype (default: the dtype of q's file).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Time N runs after warming up for at least 0.25 s and print one JSON line (computation
    /// only, no I/O; median, min and every run's seconds in order).
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
}

/// Everything a command line asks for that can be checked without reading a file: flag
/// combinations, the engine configuration, and the feature map (drawn for inputs of dimension
/// `d`). What the fuzz target drives; it leaves the memory budget (`--max-memory`) to the caller.
///
/// # Errors
/// The error `run` would report for these flags before touching a file.
pub fn check_without_files(cli: &Cli, d: usize) -> Result<(), CliError> {
    match &cli.command {
        Command::Attend(args) => attend::check_plan(args, d),
        Command::Features(args) => {
            maps::map_spec(args.map, &args.params)?.build::<f32>(d)?;
            Ok(())
        }
        Command::Reproduce(_) => Ok(()),
    }
}

/// Runs one parsed command line.
///
/// # Errors
/// Any failure, with its exit code ([`CliError::exit_code`]).
pub fn run(cli: Cli) -> Result<(), CliError> {
    poly_core::set_memory_budget(cli.max_memory)?;
    match cli.command {
        Command::Attend(args) => attend::run(&args),
        Command::Reproduce(args) => reproduce::run_reproduce(&args),
        Command::Features(args) => features::run(&args),
    }
}
