//! A process's one-time costs of the engine, paid ahead of its first call.
//!
//! The first attention call of a process also starts the thread pool, runs faer's first GEMM
//! (which detects the CPU and its caches once per process: 1.3–1.4 ms measured in this project's
//! 2-core VMs), grows each worker's GEMM buffers to the engine's tile shapes and allocates each
//! worker's score tile. At causal β = 4, n = 1024, batch × heads = 8 (≈ 8 ms a call) that made the
//! first call of a process 1.17–1.52× (median 1.32×) as long as later ones; after [`warm_up`],
//! 0.95–1.74× (median 1.06×) — 12 fresh processes each, `examples/first_calls.rs`. A tiny problem
//! through the engine instead of tile-shaped GEMMs did not help (it leaves the buffers small).

use crate::config::Threads;
use crate::element::Element;
use crate::engine::{KEY_TILE, QUERY_TILE, Scratch, TilePlan, WIDE_QUERY_TILE, run_with_threads};
use crate::error::Result;
use crate::gemm::{gemm_abt, gemm_add_ab};

/// The head dimension the warm-up's GEMMs use (the common one; 128 doubled the warm-up's time).
const WARM_UP_HEAD_DIM: usize = 64;

/// Starts the thread pool of `threads` and pays on each of its workers, for f32 and f64, what the
/// first attention call would otherwise pay: faer's one-time set-up, GEMMs of the engine's tile
/// shapes and the worker's score tile. Results never depend on it. It takes about 4 ms on 2
/// cores, more than the ~2 ms it saves a first call, since it covers both element types and both
/// tile heights: it is for a server or a model to call once at start-up, so that its first request
/// runs at the steady-state speed — not for a one-shot process such as `polyattn attend`, where it
/// would only add time (a heavier first version, run while the CLI read its inputs, made each
/// n = 1024 run 50–52 ms instead of 44–47, averages of 30 runs, twice each).
///
/// # Errors
/// If the pool cannot be created ([`crate::run_with_threads`]).
pub fn warm_up(threads: Threads) -> Result<()> {
    run_with_threads(threads, || {
        rayon::broadcast(|_| {
            warm_worker::<f32>();
            warm_worker::<f64>();
        });
    })
}

/// One worker's score tile and GEMMs of element type `T` at the engine's tile shapes: scores
/// `Q Kᵀ` and the accumulation `W V`, for both query-tile heights.
fn warm_worker<T: Element>() {
    let plan = TilePlan {
        query: WIDE_QUERY_TILE,
        key: KEY_TILE,
        rows: WIDE_QUERY_TILE,
    };
    let d = WARM_UP_HEAD_DIM;
    // Ones, not zeros: the score tile is left holding nonzero numbers, as a real call leaves it,
    // so a test after the warm-up sees whether the engine ever reads a stale tile.
    let q = vec![T::ONE; WIDE_QUERY_TILE * d];
    let kv = vec![T::ONE; KEY_TILE * d];
    let mut acc = vec![T::ZERO; WIDE_QUERY_TILE * d];
    Scratch::<T>::with(plan, |scratch| {
        for rows in [QUERY_TILE, WIDE_QUERY_TILE] {
            gemm_abt(&mut scratch.scores, &q, &kv, rows, KEY_TILE, d, T::ONE);
            gemm_add_ab(&mut acc, &scratch.scores, &kv, rows, d, KEY_TILE);
        }
    });
}
