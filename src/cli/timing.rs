//! `--repeat N`: one warm-up, then N timed runs of the computation alone.

use std::time::Instant;

/// Median and minimum of repeated timings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub median: f64,
    pub min: f64,
}

/// Runs `f` once to warm up, then `repeat` times, timing each run.
pub fn time_runs<E>(repeat: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Timing, E> {
    f()?;
    let mut seconds = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let start = Instant::now();
        f()?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    let n = seconds.len();
    let median = if n % 2 == 1 { seconds[n / 2] } else { 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]) };
    Ok(Timing { median, min: seconds[0] })
}
