//! `mpirun -np P poly-dist-bench --engine ring|sketched --n N ...`: times one distributed
//! attention call and prints one JSON line (rank 0): the slowest rank's time (median, min, max
//! over the timed calls), the bytes every rank sent, and the compute and un-hidden wait times.
//! `cargo xtask distributed` runs it for strong and weak scaling; see docs/distributed.md.
//!
//! Each rank draws only its own shard (seeded by its rows), so no rank ever holds the whole
//! sequence. Every timed call starts after a barrier; the time of a call is the largest over
//! the ranks (an all-reduce of max).

use clap::{Parser, ValueEnum};
use poly_core::{AttentionConfig, Mask, Tensor};
use poly_data::synthetic::layernormed_gaussian;
use poly_dist::mpi::collective::SystemOperation;
use poly_dist::mpi::traits::{Communicator, CommunicatorCollectives};
use poly_dist::{CommStats, ShardLayout, StateScan, ring_attention, sketched_attention};
use poly_sketch::{LinearAttentionConfig, SelfTensoredSketch, SketchScale};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// Exact polynomial attention of degree 4 by ring.
    Ring,
    /// Exact softmax attention by ring.
    RingSoftmax,
    /// Self-tensored PolySketch (p = 4, r = 32, block 256) by state scan.
    Sketched,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scan {
    Ordered,
    Tree,
}

#[derive(Parser, Debug)]
#[command(about = "Time one distributed attention call under mpirun")]
struct Args {
    #[arg(long, value_enum)]
    engine: Engine,
    /// Sequence length (the whole sequence, split over the ranks).
    #[arg(long)]
    n: usize,
    /// Batch × heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Head dimension (d = d_v).
    #[arg(long, default_value_t = 64)]
    d: usize,
    #[arg(long)]
    causal: bool,
    /// Shards of the ring (default: zig-zag when causal).
    #[arg(long)]
    contiguous: bool,
    #[arg(long, value_enum, default_value_t = Scan::Ordered)]
    scan: Scan,
    /// Timed calls (after one warm-up call).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn max_over_ranks<C: Communicator>(comm: &C, x: f64) -> f64 {
    let mut out = 0.0;
    comm.all_reduce_into(&x, &mut out, SystemOperation::max());
    out
}

fn sum_over_ranks<C: Communicator>(comm: &C, x: u64) -> u64 {
    let mut out = 0;
    comm.all_reduce_into(&x, &mut out, SystemOperation::sum());
    out
}

fn main() {
    let args = Args::parse();
    let Some(universe) = poly_dist::initialize() else {
        eprintln!("error: MPI could not be initialized with funneled threading");
        std::process::exit(2);
    };
    let world = universe.world();
    let (size, rank) = (world.size() as usize, world.rank() as usize);
    let sketched = args.engine == Engine::Sketched;
    let layout = if args.causal && !args.contiguous && !sketched {
        ShardLayout::ZigZag
    } else {
        ShardLayout::Contiguous
    };
    let segments = layout.segments(args.n, size, rank);
    // Every rank decides alike, so none is left in a collective.
    if (0..size).any(|r| layout.segments(args.n, size, r).is_empty()) {
        if rank == 0 {
            eprintln!(
                "error: --n {} leaves a rank without rows on {size} ranks",
                args.n
            );
        }
        std::process::exit(2);
    }
    let rows: usize = segments.iter().map(|s| s.len()).sum();
    let seed = 1000 + segments[0].start as u64;
    let shard = |salt: u64| -> Tensor<f32> {
        layernormed_gaussian([1, args.heads, rows, args.d], seed * 3 + salt).expect("a valid shape")
    };
    let (q, k, v) = (shard(0), shard(1), shard(2));
    let mask = if args.causal {
        Mask::Causal
    } else {
        Mask::None
    };
    let map =
        SelfTensoredSketch::<f32>::new(args.d, 4, 32, 7, SketchScale::Unbiased).expect("valid");
    let linear = LinearAttentionConfig::default()
        .with_mask(mask)
        .with_block(256)
        .with_normalization(poly_core::Normalization::Sum);
    let exact = match args.engine {
        Engine::RingSoftmax => AttentionConfig::softmax(),
        _ => AttentionConfig::polynomial(4),
    }
    .with_mask(mask);
    let scan = match args.scan {
        Scan::Ordered => StateScan::Ordered,
        Scan::Tree => StateScan::Tree,
    };
    let call = || -> CommStats {
        let result = if sketched {
            sketched_attention(
                &world,
                q.view(),
                k.view(),
                v.view(),
                segments[0].clone(),
                &map,
                &linear,
                scan,
            )
        } else {
            ring_attention(&world, q.view(), k.view(), v.view(), &segments, &exact)
        };
        match result {
            Ok((_, stats)) => stats,
            Err(e) => {
                if rank == 0 {
                    eprintln!("error: {e}");
                }
                std::process::exit(2);
            }
        }
    };
    call();
    let mut times = Vec::new();
    let mut last = CommStats::default();
    for _ in 0..args.repeat.max(1) {
        world.barrier();
        let start = Instant::now();
        last = call();
        times.push(max_over_ranks(&world, start.elapsed().as_secs_f64()));
    }
    times.sort_by(f64::total_cmp);
    let bytes_total = sum_over_ranks(&world, last.bytes_sent);
    let bytes_max = max_over_ranks(&world, last.bytes_sent as f64);
    let compute_max = max_over_ranks(&world, last.compute_seconds);
    let wait_max = max_over_ranks(&world, last.wait_seconds);
    if rank == 0 {
        println!(
            "{{\"engine\": \"{:?}\", \"ranks\": {size}, \"n\": {}, \"heads\": {}, \"d\": {}, \"causal\": {}, \"layout\": \"{layout:?}\", \"scan\": \"{scan:?}\", \"threads_per_rank\": {}, \"seconds_median\": {:.6}, \"seconds_min\": {:.6}, \"seconds_max\": {:.6}, \"bytes_sent_total\": {bytes_total}, \"bytes_sent_max_rank\": {bytes_max}, \"compute_seconds_max_rank\": {compute_max:.6}, \"wait_seconds_max_rank\": {wait_max:.6}, \"feature_dim\": {}}}",
            args.engine,
            args.n,
            args.heads,
            args.d,
            args.causal,
            rayon::current_num_threads(),
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            poly_sketch::FeatureMap::feature_dim(&map),
        );
    }
}
