//! Overlapping computation with communication: the calling thread (the one MPI was initialized
//! on, `MPI_THREAD_FUNNELED`) drives the pending requests while another thread computes.
//!
//! MPI libraries progress a transfer only inside MPI calls; a rank that posts its sends and then
//! computes for 50 ms without calling MPI leaves a large (rendezvous) message waiting the whole
//! time. So the computation runs on a helper thread (which hands its work to the rayon pool) and
//! this thread tests the requests every few microseconds until they are done.

use mpi::request::{Request, Scope};
use std::time::{Duration, Instant};

/// How long the driving thread sleeps between tests of its requests.
const POLL: Duration = Duration::from_micros(500);

/// Seconds spent computing and seconds spent waiting for the requests after the computation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overlap {
    /// Time of the computation.
    pub compute_seconds: f64,
    /// Time the requests took beyond the computation (communication not hidden).
    pub wait_seconds: f64,
}

/// Runs `compute` on a helper thread while testing `requests` here; returns its result once
/// both are done.
pub fn compute_while_communicating<'a, D: ?Sized, S: Scope<'a>, R: Send>(
    requests: Vec<Request<'a, D, S>>,
    compute: impl FnOnce() -> R + Send,
) -> (R, Overlap) {
    let start = Instant::now();
    std::thread::scope(|threads| {
        let worker = threads.spawn(move || {
            let r = compute();
            (r, start.elapsed().as_secs_f64())
        });
        let mut pending = requests;
        while !pending.is_empty() && !worker.is_finished() {
            pending = pending.into_iter().filter_map(|r| r.test().err()).collect();
            std::thread::sleep(POLL);
        }
        let (result, compute_seconds) = worker.join().expect("the computation does not panic");
        let waited = Instant::now();
        for r in pending {
            r.wait();
        }
        let wait_seconds = waited.elapsed().as_secs_f64();
        (
            result,
            Overlap {
                compute_seconds,
                wait_seconds,
            },
        )
    })
}
