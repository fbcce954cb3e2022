//! `polyattn attend --distributed`: one rank of an `mpirun` job.
//!
//! Every rank reads only the headers of the three `.npy` files and then only its own rows of
//! the sequence axis (zig-zag or contiguous shards, [`poly_dist::ShardLayout`]); the ranks compute
//! together ([`poly_dist::ring_attention`] or [`poly_dist::sketched_attention`]); and each rank
//! writes its rows straight into one output file whose header rank 0 wrote first. Nothing is
//! gathered: no rank ever holds more than its shard, so the job's reach is the sum of the
//! ranks' memories, and writing costs each rank only its own rows.

use super::{AttendArgs, CliError, ShardsArg};
use poly_core::AttentionConfig;
use poly_sketch::{LinearAttentionConfig, MapSpec};

/// What the ranks compute (read only by the MPI build).
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub enum Engine {
    Exact(AttentionConfig),
    Sketched(MapSpec, LinearAttentionConfig),
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// The flags a distributed run cannot take, checked before MPI starts.
fn check_flags(args: &AttendArgs, engine: &Engine) -> Result<(), CliError> {
    let excluded = [
        ("--seq-lens", args.seq_lens.is_some()),
        ("--decode", args.decode.is_some()),
        (
            "--repeat (time distributed runs with cargo xtask distributed)",
            args.repeat.is_some(),
        ),
    ];
    if let Some((flag, _)) = excluded.iter().find(|(_, given)| *given) {
        return Err(super::attend::does_not_apply(flag, "--distributed"));
    }
    if args.out.is_none() {
        return Err(usage(
            "--distributed writes its output to a file: give --out O.npy",
        ));
    }
    match engine {
        Engine::Exact(_) if args.scan.is_some() => Err(super::attend::does_not_apply(
            "--scan",
            "the exact kernels (their ranks pass keys around a ring)",
        )),
        Engine::Sketched(..) if args.shards == Some(ShardsArg::Zigzag) => Err(usage(format!(
            "--shards zigzag: --kernel {} combines states in sequence order and needs --shards contiguous",
            super::kernel_name(args.kernel)
        ))),
        _ => Ok(()),
    }
}

/// Runs this process's rank.
pub fn run(args: &AttendArgs, engine: Engine) -> Result<(), CliError> {
    check_flags(args, &engine).map_err(|e| match e {
        // Every rank finds the same bad flag: the launcher's rank 0 alone says so.
        CliError::Usage(message) if launched_rank().is_some_and(|r| r != 0) => {
            CliError::Distributed {
                message,
                report: false,
            }
        }
        other => other,
    })?;
    ranks::run(args, engine)
}

/// This process's rank as the MPI launcher announces it (OpenMPI, MPICH), before MPI starts.
fn launched_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

#[cfg(not(feature = "distributed"))]
mod ranks {
    use super::{AttendArgs, CliError, Engine};

    pub fn run(_: &AttendArgs, _: Engine) -> Result<(), CliError> {
        Err(CliError::Usage(
            "this polyattn was built without MPI: build it with `cargo build --release -p \
             polyattn-cli --features distributed` (needs OpenMPI and libclang: see the README's \
             MPI section, or run `cargo xtask mpi-check`)"
                .into(),
        ))
    }
}

#[cfg(feature = "distributed")]
mod ranks {
    use super::{AttendArgs, CliError, Engine, ShardsArg};
    use crate::cli::DtypeArg;
    use crate::cli::ScanArg;
    use crate::cli::attend::output_shape;
    use poly_core::Mask;
    use poly_data::{
        RowSource, create_npy_for_rows, finish_npy_rows, npy_info, safetensors_info, write_npy_rows,
    };
    use poly_dist::mpi::traits::{Communicator, CommunicatorCollectives};
    use poly_dist::{
        DistElement, DistError, FailureKind, ShardLayout, StateScan, agree_described,
        ring_attention, sketched_attention,
    };

    fn failed(e: DistError, root: bool) -> CliError {
        CliError::Distributed {
            message: e.to_string(),
            report: root,
        }
    }

    fn described<R>(r: Result<R, poly_data::DataError>) -> Result<R, (FailureKind, String)> {
        r.map_err(|e| (FailureKind::Parameter, e.to_string()))
    }

    pub fn run(args: &AttendArgs, engine: Engine) -> Result<(), CliError> {
        let universe = poly_dist::initialize().ok_or_else(|| {
            CliError::Usage("MPI could not be initialized with funneled threading".into())
        })?;
        let world = universe.world();
        let result = run_rank(args, engine, &world);
        if let Err(e) = &result {
            // mpirun ends the job when the first rank exits with an error: rank 0 says what
            // failed before any rank leaves, and then none of them says it again.
            if world.rank() == 0 {
                eprintln!("error: {e}");
            }
            world.barrier();
        }
        result.map_err(|e| CliError::Distributed {
            message: e.to_string(),
            report: false,
        })
    }

    fn run_rank(
        args: &AttendArgs,
        engine: Engine,
        world: &impl Communicator,
    ) -> Result<(), CliError> {
        let root = world.rank() == 0;
        // Headers only: each rank then reads just its rows of each tensor.
        let sources = match (&args.input, &args.q, &args.k, &args.v) {
            (Some(file), ..) => ["q", "k", "v"].map(|name| safetensors_info(file, name)),
            (None, Some(q), Some(k), Some(v)) => [q, k, v].map(|p| npy_info(p)),
            _ => {
                return Err(CliError::Usage(
                    "give the inputs as --q Q.npy --k K.npy --v V.npy or as --input FILE.safetensors".into(),
                ));
            }
        };
        let infos = agree_described(
            world,
            described(sources.into_iter().collect::<Result<Vec<_>, _>>()),
        )
        .map_err(|e| failed(e, root))?;
        let seq = |i: usize| infos[i].shape[infos[i].shape.len() - 2];
        let n = seq(0);
        if seq(1) != n || seq(2) != n {
            return Err(CliError::Usage(format!(
                "--distributed splits one sequence: q, k and v need the same sequence length (found {}, {}, {})",
                n,
                seq(1),
                seq(2)
            )));
        }
        let file_dtype = if infos[0].width == 8 { "f64" } else { "f32" };
        match DtypeArg::resolve(args.dtype, file_dtype) {
            "f64" => typed::<f64>(args, &engine, world, &infos, n),
            _ => typed::<f32>(args, &engine, world, &infos, n),
        }
    }

    fn typed<T: DistElement + npyz::AutoSerialize>(
        args: &AttendArgs,
        engine: &Engine,
        world: &impl Communicator,
        sources: &[RowSource],
        n: usize,
    ) -> Result<(), CliError> {
        let query_rank = sources[0].shape.len();
        let (size, rank) = (world.size() as usize, world.rank() as usize);
        let root = rank == 0;
        let layout = match (args.shards, engine) {
            (Some(ShardsArg::Zigzag), _) => ShardLayout::ZigZag,
            (Some(ShardsArg::Contiguous), _) | (None, Engine::Sketched(..)) => {
                ShardLayout::Contiguous
            }
            (None, Engine::Exact(cfg)) if cfg.mask == Mask::Causal => ShardLayout::ZigZag,
            (None, Engine::Exact(_)) => ShardLayout::Contiguous,
        };
        let segments = layout.segments(n, size, rank);
        // Decided alike on every rank (from n and the rank count), so no rank is left waiting.
        if (0..size).any(|r| layout.segments(n, size, r).is_empty()) {
            return Err(CliError::Usage(format!(
                "{size} ranks for a sequence of {n}: every rank needs at least one row"
            )));
        }
        let read: Vec<_> = sources
            .iter()
            .map(|s| {
                s.read_rows(&segments)
                    .and_then(|t| t.to_bhnd::<T>(s.path()))
            })
            .collect();
        let [q, k, v]: [_; 3] = read
            .try_into()
            .map_err(|_| CliError::Usage("three inputs".into()))?;
        let tensors = agree_described(world, described(q.and_then(|q| Ok((q, k?, v?)))))
            .map_err(|e| failed(e, root))?;
        let (q, k, v) = tensors;
        let out = match engine {
            Engine::Exact(cfg) => {
                ring_attention(world, q.view(), k.view(), v.view(), &segments, cfg)
            }
            Engine::Sketched(spec, cfg) => {
                let map = agree_described(
                    world,
                    spec.build::<T>(q.shape()[3])
                        .map_err(|e| (FailureKind::Parameter, e.to_string())),
                )
                .map_err(|e| failed(e, root))?;
                let scan = match args.scan {
                    Some(ScanArg::Tree) => StateScan::Tree,
                    _ => StateScan::Ordered,
                };
                sketched_attention(
                    world,
                    q.view(),
                    k.view(),
                    v.view(),
                    segments[0].clone(),
                    map.as_ref(),
                    cfg,
                    scan,
                )
            }
        };
        let (out, _) = out.map_err(|e| failed(e, root))?;
        let [b, h, _, d_v] = out.shape();
        let shape = output_shape(query_rank, [b, h, n, d_v]);
        let path = args.out.as_ref().expect("checked: --distributed has --out");
        let created = if root {
            create_npy_for_rows::<T>(path, &shape)
        } else {
            Ok(())
        };
        agree_described(world, described(created)).map_err(|e| failed(e, root))?;
        let written = write_npy_rows(path, &shape, &segments, out.as_slice());
        let written = agree_described(world, described(written));
        if root {
            finish_npy_rows(path, written.is_ok())?;
        }
        written.map_err(|e| failed(e, root))
    }
}
