//! `polyattn attend`: exact polynomial or softmax attention on tensors from files.

use super::inputs::Inputs;
use super::{AttendArgs, CliError, DtypeArg, KernelArg, NormArg};
use clap::ValueEnum;
use poly_bench::machine::peak_rss_bytes;
use poly_bench::timing::time_runs;
use poly_core::{
    AttentionConfig, Element, Kernel, Mask, Normalization, Tensor, Threads, attention,
    check_inputs, exact_attention_flops,
};
use std::num::NonZeroUsize;

pub fn run(args: &AttendArgs) -> Result<(), CliError> {
    let cfg = config(args)?;
    let inputs = Inputs::load(args)?;
    let dtype = match args.dtype {
        Some(DtypeArg::F32) => "f32",
        Some(DtypeArg::F64) => "f64",
        None => inputs.query_dtype(),
    };
    match dtype {
        "f64" => run_typed::<f64>(args, &cfg, &inputs),
        _ => run_typed::<f32>(args, &cfg, &inputs),
    }
}

/// The attention configuration the flags describe.
fn config(args: &AttendArgs) -> Result<AttentionConfig, CliError> {
    let kernel = match args.kernel {
        KernelArg::Poly => Kernel::Polynomial {
            degree: args.degree,
        },
        KernelArg::Softmax => Kernel::Softmax,
        sketched => {
            return Err(CliError::Usage(format!(
                "--kernel {}: sketched kernels are not available in this version; \
                 use --kernel poly or --kernel softmax",
                sketched
                    .to_possible_value()
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default()
            )));
        }
    };
    let sketch_flags = [
        ("--sketch-dim", args.sketch_dim.is_some()),
        ("--seed", args.seed.is_some()),
        ("--block", args.block.is_some()),
        ("--local-exact", args.local_exact),
    ];
    if let Some((flag, _)) = sketch_flags.iter().find(|(_, given)| *given) {
        return Err(CliError::Usage(format!(
            "{flag} only applies to sketched kernels"
        )));
    }
    let threads = match args.threads {
        None => Threads::Global,
        Some(n) => Threads::Exact(
            NonZeroUsize::new(n)
                .ok_or_else(|| CliError::Usage("--threads must be at least 1".into()))?,
        ),
    };
    if args.repeat == Some(0) {
        return Err(CliError::Usage("--repeat must be at least 1".into()));
    }
    let cfg = AttentionConfig {
        kernel,
        mask: if args.causal {
            Mask::Causal
        } else {
            Mask::None
        },
        normalization: match args.norm {
            NormArg::Sum => Normalization::Sum,
            NormArg::OnePlusSum => Normalization::OnePlusSum(args.norm_bias),
            NormArg::None => Normalization::None,
        },
        scale: args.scale,
        layernorm: args.layernorm,
        threads,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn run_typed<T: Element + npyz::AutoSerialize>(
    args: &AttendArgs,
    cfg: &AttentionConfig,
    inputs: &Inputs,
) -> Result<(), CliError> {
    let [q, k, v] = inputs
        .tensors
        .each_ref()
        .map(|(path, t)| t.to_bhnd::<T>(path));
    let (q, k, v) = (q?, k?, v?);
    let dims = check_inputs(&q.view(), &k.view(), &v.view(), cfg)?;
    let mut output: Option<Tensor<T>> = None;
    let mut compute = || -> Result<(), poly_core::Error> {
        output = Some(attention(q.view(), k.view(), v.view(), cfg)?);
        Ok(())
    };
    match args.repeat {
        None => compute()?,
        Some(repeat) => {
            let timing = time_runs(repeat, compute)?;
            let gflop = exact_attention_flops(&dims, cfg.mask) / 1e9;
            let threads = poly_core::run_with_threads(cfg.threads, rayon::current_num_threads)?;
            let record = serde_json::json!({
                "kernel": match cfg.kernel { Kernel::Polynomial { .. } => "poly", Kernel::Softmax => "softmax" },
                "degree": match cfg.kernel { Kernel::Polynomial { degree } => Some(degree), Kernel::Softmax => None },
                "causal": cfg.mask == Mask::Causal,
                "shape": [dims.batch, dims.heads, dims.n_q, dims.n_k, dims.d, dims.d_v],
                "dtype": T::NAME,
                "threads": threads,
                "seconds_median": timing.median,
                "seconds_min": timing.min,
                "gflop": gflop,
                "gflops": gflop / timing.median,
                "max_rss_bytes": peak_rss_bytes(),
            });
            println!("{record}");
        }
    }
    let output = output.expect("computed at least once");
    let shape = output_shape(inputs.query_rank(), output.shape());
    match &args.out {
        Some(path) => poly_data::write_npy(path, &shape, output.as_slice())?,
        None if args.repeat.is_none() => print_summary(&shape, output.as_slice()),
        None => {}
    }
    Ok(())
}

/// The output keeps q's rank: `[n, d_v]`, `[h, n, d_v]` or `[b, h, n, d_v]`.
fn output_shape(query_rank: usize, bhnd: [usize; 4]) -> Vec<usize> {
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
