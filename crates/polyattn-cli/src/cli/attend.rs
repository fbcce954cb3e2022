//! `polyattn attend`: exact (poly, softmax) or sketched linear (polysketch, tensorsketch,
//! maclaurin, favor, exact2) attention on tensors from files.

use super::decode::{decode_exact, decode_sketched};
use super::inputs::Inputs;
use super::maps::map_spec;
use super::{AttendArgs, CliError, DtypeArg, KernelArg, NormArg, kernel_name};
use poly_bench::machine::peak_rss_bytes;
use poly_bench::records::AttendTiming;
use poly_bench::timing::{Timing, time_runs_each};
use poly_core::{
    AttentionConfig, Dims, Element, Kernel, Mask, Normalization, Sequences, Tensor, Threads,
    attention, attention_into, attention_packed, check_inputs, exact_attention_flops_in_window,
};
use poly_sketch::{
    LinearAttentionConfig, decoding_flops, linear_attention, linear_attention_flops,
    linear_attention_packed,
};
use poly_sketch::{MapSpec, SketchElement};
use std::num::NonZeroUsize;

/// Default block size of the block-causal algorithm.
const DEFAULT_BLOCK: usize = 256;

/// What the flags ask for.
enum Plan {
    Exact(AttentionConfig),
    Linear(MapSpec, LinearAttentionConfig),
}

pub fn run(args: &AttendArgs) -> Result<(), CliError> {
    let plan = plan(args)?;
    if args.distributed {
        return match plan {
            Plan::Exact(cfg) => {
                super::distributed::run(args, super::distributed::Engine::Exact(cfg))
            }
            Plan::Linear(spec, cfg) => {
                super::distributed::run(args, super::distributed::Engine::Sketched(spec, cfg))
            }
        };
    }
    let inputs = Inputs::load(args)?;
    match DtypeArg::resolve(args.dtype, inputs.query_dtype()) {
        "f64" => run_typed::<f64>(args, &plan, &inputs),
        _ => run_typed::<f32>(args, &plan, &inputs),
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// The one message for a flag that the chosen kernel or input mode ignores.
pub(super) fn does_not_apply(flag: &str, context: &str) -> CliError {
    usage(format!("{flag} does not apply to {context}: remove it"))
}

/// [`plan`], and the feature map for inputs of dimension `d`.
pub(super) fn check_plan(args: &AttendArgs, d: usize) -> Result<(), CliError> {
    if let Plan::Linear(spec, _) = plan(args)? {
        spec.build::<f32>(d)?;
    }
    Ok(())
}

/// The computation the flags describe, validated before any file is read.
fn plan(args: &AttendArgs) -> Result<Plan, CliError> {
    let threads = match args.threads {
        None => Threads::Global,
        Some(n) => {
            poly_core::check_threads(n).map_err(|_| {
                usage(format!(
                    "--threads {n} is more than this machine can use (at most {})",
                    poly_core::max_threads()
                ))
            })?;
            Threads::Exact(
                NonZeroUsize::new(n).ok_or_else(|| usage("--threads must be at least 1"))?,
            )
        }
    };
    match args.repeat {
        Some(0) => return Err(usage("--repeat must be at least 1")),
        // One f64 per timed run, plus the warm-up.
        Some(n) => {
            poly_core::check_allocation("the timings of --repeat", n.saturating_add(1), 8)?;
        }
        None => {}
    }
    if args.norm_bias.is_some() && args.norm != NormArg::OnePlusSum {
        return Err(does_not_apply(
            "--norm-bias",
            "a normalization other than one-plus-sum",
        ));
    }
    let mask = if args.causal {
        Mask::Causal
    } else {
        Mask::None
    };
    let normalization = match args.norm {
        NormArg::Sum => Normalization::Sum,
        NormArg::OnePlusSum => Normalization::OnePlusSum(args.norm_bias.unwrap_or(1.0)),
        NormArg::None => Normalization::None,
    };
    let exact_kernel = match args.kernel {
        KernelArg::Poly => Some(Kernel::Polynomial {
            degree: args.params.degree.unwrap_or(4),
        }),
        KernelArg::Softmax => Some(Kernel::Softmax),
        _ => None,
    };
    let mut cfg = AttentionConfig::new(exact_kernel.unwrap_or(Kernel::Polynomial {
        degree: args.params.degree.unwrap_or(4),
    }))
    .with_mask(mask)
    .with_normalization(normalization)
    .with_layernorm(args.layernorm)
    .with_threads(threads);
    cfg.scale = args.scale;
    cfg.window = args.window;
    cfg.validate()?;
    if exact_kernel.is_none() && args.window.is_some() {
        return Err(does_not_apply(
            "--window",
            "the sketched kernels (it only applies to --kernel poly and softmax)",
        ));
    }
    if exact_kernel.is_some() {
        let sketch_flags = [
            ("--sketch-dim", args.params.sketch_dim.is_some()),
            ("--seed", args.params.seed.is_some()),
            ("--block", args.block.is_some()),
            ("--local-exact", args.local_exact),
        ];
        if let Some((flag, _)) = sketch_flags.iter().find(|(_, given)| *given) {
            return Err(does_not_apply(
                flag,
                "the exact kernels (it only applies to sketched kernels)",
            ));
        }
        if args.kernel == KernelArg::Softmax && args.params.degree.is_some() {
            return Err(does_not_apply("--degree", "--kernel softmax"));
        }
        return Ok(Plan::Exact(cfg));
    }
    let spec = map_spec(args.kernel, &args.params)?;
    if args.local_exact && !args.causal {
        return Err(usage(
            "--local-exact makes the diagonal blocks exact: it needs --causal",
        ));
    }
    if args.local_exact && spec.kind == poly_sketch::MapKind::Favor {
        return Err(usage(
            "--local-exact uses exact polynomial weights: not available with favor (softmax)",
        ));
    }
    let block = args.block.unwrap_or(DEFAULT_BLOCK);
    if block == 0 {
        return Err(usage("--block must be at least 1"));
    }
    let mut linear = LinearAttentionConfig::default()
        .with_mask(mask)
        .with_block(block)
        .with_normalization(normalization)
        .with_layernorm(args.layernorm)
        .with_local_exact(args.local_exact)
        .with_threads(threads);
    linear.scale = args.scale;
    Ok(Plan::Linear(spec, linear))
}

fn run_typed<T: SketchElement + npyz::AutoSerialize>(
    args: &AttendArgs,
    plan: &Plan,
    inputs: &Inputs,
) -> Result<(), CliError> {
    let [q, k, v] = inputs
        .tensors
        .each_ref()
        .map(|(path, t)| t.to_bhnd::<T>(path));
    let (q, k, v) = (q?, k?, v?);
    let (dims, threads) = match plan {
        Plan::Exact(cfg) => (
            check_inputs(&q.view(), &k.view(), &v.view(), cfg)?,
            cfg.threads,
        ),
        Plan::Linear(_, cfg) => {
            let shape_only = AttentionConfig::polynomial(1);
            (
                check_inputs(&q.view(), &k.view(), &v.view(), &shape_only)?,
                cfg.threads,
            )
        }
    };
    // The map is drawn once, outside the timed runs.
    let map = match plan {
        Plan::Linear(spec, _) => Some(spec.build::<T>(dims.d)?),
        Plan::Exact(_) => None,
    };
    let sequences = args
        .seq_lens
        .as_deref()
        .map(Sequences::from_lengths)
        .transpose()?;
    if let Some(s) = &sequences {
        s.check(&dims)?;
    }
    if let Some(prompt) = args.decode
        && (dims.n_q != dims.n_k || prompt >= dims.n_k)
    {
        return Err(usage(format!(
            "--decode {prompt} needs n_q = n_k and a prompt shorter than the sequence; found \
             n_q = {}, n_k = {}",
            dims.n_q, dims.n_k
        )));
    }
    let mut output: Option<Tensor<T>> = None;
    // Dense exact attention writes into one output buffer, allocated (and touched) before the
    // timed runs, so --repeat times the attention and not the page faults of a fresh output.
    let mut dense_output = match (plan, &sequences, args.decode) {
        (Plan::Exact(_), None, None) => {
            poly_core::check_elements("attention output", &dims.output_shape(), size_of::<T>())?;
            let mut t = Tensor::zeros(dims.output_shape())?;
            t.as_mut_slice().fill(T::ZERO);
            Some(t)
        }
        _ => None,
    };
    let mut compute = || -> Result<(), poly_core::Error> {
        if let (Plan::Exact(cfg), Some(out)) = (plan, dense_output.as_mut()) {
            return attention_into(q.view(), k.view(), v.view(), cfg, out.as_mut_slice());
        }
        output = Some(match (plan, &map, args.decode) {
            (Plan::Exact(cfg), _, Some(prompt)) => decode_exact([&q, &k, &v], &dims, cfg, prompt)?,
            (Plan::Linear(_, cfg), Some(map), Some(prompt)) => {
                decode_sketched([&q, &k, &v], &dims, map.as_ref(), cfg, prompt, threads)?
            }
            (Plan::Exact(cfg), _, None) => match &sequences {
                Some(s) => attention_packed(q.view(), k.view(), v.view(), cfg, s)?,
                None => attention(q.view(), k.view(), v.view(), cfg)?,
            },
            (Plan::Linear(_, cfg), Some(map), None) => match &sequences {
                Some(s) => {
                    linear_attention_packed(q.view(), k.view(), v.view(), map.as_ref(), cfg, s)?
                }
                None => linear_attention(q.view(), k.view(), v.view(), map.as_ref(), cfg)?,
            },
            (Plan::Linear(..), None, _) => unreachable!("the map is built for linear plans"),
        });
        Ok(())
    };
    match args.repeat {
        None => compute()?,
        Some(repeat) => {
            let seconds_each = time_runs_each(repeat, compute)?;
            let timing = Timing::from_seconds(seconds_each.clone());
            // Decoding counts the rows it outputs: the last n − P queries over all n keys.
            let decoded = args.decode.map(|prompt| {
                Dims::new(
                    dims.batch,
                    dims.heads,
                    dims.n_k - prompt,
                    dims.n_k,
                    dims.d,
                    dims.d_v,
                )
                .with_kv_heads(dims.kv_heads)
            });
            let flops = match (plan, &map, &decoded) {
                (Plan::Linear(_, cfg), Some(map), Some(rows)) => {
                    decoding_flops(rows, map.as_ref(), cfg)
                }
                (Plan::Exact(cfg), _, Some(rows)) => {
                    exact_attention_flops_in_window(rows, cfg.mask, cfg.window)
                }
                (Plan::Linear(_, cfg), Some(map), None) => per_sequence(&dims, args, |one| {
                    linear_attention_flops(one, map.as_ref(), cfg)
                }),
                (Plan::Exact(cfg), _, None) => per_sequence(&dims, args, |one| {
                    exact_attention_flops_in_window(one, cfg.mask, cfg.window)
                }),
                (Plan::Linear(..), None, _) => unreachable!("the map is built for linear plans"),
            };
            let gflop = flops / 1e9;
            let degree = match plan {
                Plan::Exact(AttentionConfig {
                    kernel: Kernel::Polynomial { degree },
                    ..
                }) => Some(*degree),
                Plan::Exact(_) => None,
                Plan::Linear(spec, _) if spec.kind == poly_sketch::MapKind::Favor => None,
                Plan::Linear(spec, _) => Some(spec.degree),
            };
            let record = AttendTiming {
                kernel: kernel_name(args.kernel),
                degree,
                causal: args.causal,
                shape: [dims.batch, dims.heads, dims.n_q, dims.n_k, dims.d, dims.d_v],
                dtype: T::NAME.into(),
                threads: poly_core::run_with_threads(threads, rayon::current_num_threads)?,
                seconds_median: timing.median,
                seconds_min: timing.min,
                seconds_each,
                gflop,
                gflops: gflop / timing.median,
                max_rss_bytes: peak_rss_bytes(),
            };
            println!(
                "{}",
                serde_json::to_string(&record).expect("a timing serializes")
            );
        }
    }
    let output = output.or(dense_output).expect("computed at least once");
    let shape = output_shape(inputs.query_rank(), output.shape());
    match &args.out {
        Some(path) => poly_data::write_npy(path, &shape, output.as_slice())?,
        None if args.repeat.is_none() => print_summary(&shape, output.as_slice()),
        None => {}
    }
    Ok(())
}

/// The output keeps q's rank: `[n, d_v]`, `[h, n, d_v]` or `[b, h, n, d_v]`.
pub(super) fn output_shape(query_rank: usize, bhnd: [usize; 4]) -> Vec<usize> {
    bhnd[4 - query_rank.clamp(2, 4)..].to_vec()
}

fn print_summary<T: Element>(shape: &[usize], data: &[T]) {
    let values: Vec<f64> = data.iter().map(|x| x.to_f64()).collect();
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    println!(
        "output {shape:?} {}: min {min:.6e}, max {max:.6e}, mean {mean:.6e} (use --out O.npy to save it)",
        T::NAME
    );
}

/// A FLOP model summed over the packed sequences (each its own problem), or of the whole input.
fn per_sequence(dims: &Dims, args: &AttendArgs, flops: impl Fn(&Dims) -> f64) -> f64 {
    match &args.seq_lens {
        Some(lengths) => lengths
            .iter()
            .map(|&n| flops(&Dims::new(dims.batch, dims.heads, n, n, dims.d, dims.d_v)))
            .sum(),
        None => flops(dims),
    }
}
