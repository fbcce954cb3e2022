//! The pieces under the attention engines, each against a yardstick measured in the same run.
//!
//! * `power`: the scaled power kernel (β = 4, with its row sums) and softmax's row maximum plus
//!   exp (with its row sums) over a 64 × 512 tile, against a plain copy of the same bytes — how
//!   close the elementwise passes run to memory speed;
//! * `feature_maps`: every feature map on one block of 256 rows (d = 64, m ≈ 528);
//! * `sketched_n{1024,4096}`: self-tensored PolySketch (p = 4, r = 32, b = 256) causal, its mixed
//!   variant and exact causal β = 4, batch × heads = 8, all threads.
//!
//! `cargo bench --bench kernels` (add `-- --quick` for a fast pass).

use criterion::{Criterion, Throughput};
use poly_bench::methods::{FEATURES, MethodName};
use poly_bench::scenario::Scenario;
use poly_core::primitives::{exp_in_place, power_in_place, row_max};
use poly_data::synthetic::uniform;
use poly_sketch::{LinearAttentionConfig, MapKind, MapSpec, linear_attention};
use std::hint::black_box;
use std::time::Duration;

/// Resets the tile and raises it to the 4th power row by row, as the engine does per key tile.
#[inline(never)]
fn power_tile(work: &mut [f32], tile: &[f32]) -> f32 {
    work.copy_from_slice(tile);
    work.chunks_exact_mut(512)
        .map(|row| power_in_place(row, 1.0, 4).sum)
        .sum()
}

/// Resets the tile and turns each row into softmax weights `exp(x − max)`, as the engine does per
/// key tile.
#[inline(never)]
fn exp_tile(work: &mut [f32], tile: &[f32]) -> f32 {
    work.copy_from_slice(tile);
    work.chunks_exact_mut(512)
        .map(|row| {
            let max = row_max(row);
            exp_in_place(row, max)
        })
        .sum()
}

/// A zeroed buffer of `len` values whose address sits half a page away (mod 4 KiB) from `other`:
/// a copy between buffers at nearly the same offset mod 4 KiB stalls on 4K aliasing, which
/// would measure the allocator's placement rather than the kernels.
fn buffer_apart(other: &[f32], len: usize) -> (Vec<f32>, usize) {
    let buffer = vec![0.0f32; len + 1024];
    let gap = (buffer.as_ptr() as usize).wrapping_sub(other.as_ptr() as usize) % 4096;
    let shift_bytes = (2048 + 4096 - gap) % 4096;
    (buffer, shift_bytes / 4)
}

fn bench_power(c: &mut Criterion) {
    let tile = uniform::<f32>([1, 1, 64, 512], -1.0, 1.0, 1)
        .unwrap()
        .into_vec();
    let (mut buffer, at) = buffer_apart(&tile, tile.len());
    let work = &mut buffer[at..at + tile.len()];
    let mut group = c.benchmark_group("power");
    group.throughput(Throughput::Bytes((tile.len() * 4) as u64));
    group.bench_function("power4_tile_64x512", |b| {
        b.iter(|| black_box(power_tile(work, &tile)))
    });
    group.bench_function("max_exp_tile_64x512", |b| {
        b.iter(|| black_box(exp_tile(work, &tile)))
    });
    // The yardstick on the same buffers: the reset copy plus a second copy standing in for the
    // power pass's read and write of the tile.
    group.bench_function("memcpy_twice_tile_64x512", |b| {
        b.iter(|| {
            work.copy_from_slice(&tile);
            black_box(&mut *work);
            work.copy_from_slice(&tile);
            black_box(&mut *work);
        })
    });
    group.finish();
}

fn bench_feature_maps(c: &mut Criterion) {
    let (rows, d) = (256, 64);
    let x = uniform::<f32>([1, 1, rows, d], -1.0, 1.0, 2)
        .unwrap()
        .into_vec();
    let mut group = c.benchmark_group("feature_maps");
    group.throughput(Throughput::Elements(rows as u64));
    for (kind, degree, size) in [
        (MapKind::PolySketch, 4, 32),
        (MapKind::PolySketchTree, 4, 32),
        (MapKind::TensorSketch, 4, FEATURES),
        (MapKind::RandomMaclaurin, 4, FEATURES),
        (MapKind::Favor, 1, FEATURES),
        (MapKind::Exact2, 2, 0),
    ] {
        let map = MapSpec::new(kind, degree, size, 0).build::<f32>(d).unwrap();
        let mut out = vec![0.0f32; rows * map.feature_dim()];
        group.bench_function(format!("{}_m{}", kind.name(), map.feature_dim()), |b| {
            b.iter(|| map.map_keys_into(black_box(&x), &mut out))
        });
    }
    group.finish();
}

fn bench_sketched(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    for n in [1024, 4096] {
        let mut group = c.benchmark_group(format!("sketched_n{n}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        for name in [
            MethodName::Polysketch,
            MethodName::PolysketchLocal,
            MethodName::Poly4,
        ] {
            let scenario = Scenario {
                method: name.method(),
                causal: true,
                n,
                d: 64,
                batch_heads: 8,
                threads,
                block: 256,
            };
            group.throughput(Throughput::Elements(scenario.flops() as u64));
            let [q, k, v] = scenario.inputs().unwrap();
            match scenario.method {
                poly_bench::scenario::Method::Sketched { map, local_exact } => {
                    let map = map.build::<f32>(64).unwrap();
                    let cfg: LinearAttentionConfig =
                        scenario.linear_config(map.as_ref(), local_exact);
                    group.bench_function(scenario.method.label(), |b| {
                        b.iter(|| {
                            linear_attention(q.view(), k.view(), v.view(), map.as_ref(), &cfg)
                                .unwrap()
                        })
                    });
                }
                poly_bench::scenario::Method::Exact(kernel) => {
                    let cfg = scenario.exact_config(kernel);
                    group.bench_function(scenario.method.label(), |b| {
                        b.iter(|| poly_core::attention(q.view(), k.view(), v.view(), &cfg).unwrap())
                    });
                }
                poly_bench::scenario::Method::Peer(_) => {}
            }
        }
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_power(&mut c);
    bench_feature_maps(&mut c);
    bench_sketched(&mut c);
    c.final_summary();
}
