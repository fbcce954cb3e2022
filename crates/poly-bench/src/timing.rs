//! Timing of repeated runs: a warm-up by time (at least 0.25 s), then `repeat` measured runs.

use std::time::Instant;

/// Summary of repeated timings, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Median seconds per run.
    pub median: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Timed runs.
    pub runs: usize,
}

impl Timing {
    /// `(max − min) / median`: how noisy the runs were.
    pub fn spread(&self) -> f64 {
        (self.max - self.min) / self.median
    }

    /// Summary of raw timings (`seconds` must be non-empty).
    pub fn from_seconds(mut seconds: Vec<f64>) -> Self {
        assert!(!seconds.is_empty(), "at least one timing");
        seconds.sort_by(f64::total_cmp);
        let n = seconds.len();
        let median = if n % 2 == 1 {
            seconds[n / 2]
        } else {
            0.5 * (seconds[n / 2 - 1] + seconds[n / 2])
        };
        Timing {
            median,
            min: seconds[0],
            max: seconds[n - 1],
            runs: n,
        }
    }
}

/// Warm-up before timing: calls until this many seconds have passed (at least one, at most
/// [`WARM_UP_MAX_CALLS`]). The first calls of a process pay for thread start-up, page faults and
/// the first GEMMs; a count of calls cannot know how many that takes, a time budget can.
pub const WARM_UP_SECONDS: f64 = 0.25;
/// The most warm-up calls.
pub const WARM_UP_MAX_CALLS: usize = 50;

/// Runs `f` to warm up (see [`WARM_UP_SECONDS`]), then `repeat` (≥ 1) times, timing each run.
///
/// # Errors
/// The first error `f` returns.
pub fn time_runs<E>(repeat: usize, f: impl FnMut() -> Result<(), E>) -> Result<Timing, E> {
    Ok(Timing::from_seconds(time_runs_each(repeat, f)?))
}

/// [`time_runs`], returning every timed run's seconds in the order they ran.
///
/// # Errors
/// The first error `f` returns.
pub fn time_runs_each<E>(
    repeat: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Vec<f64>, E> {
    let mut seconds = seconds_interleaved(repeat, &mut [&mut f])?;
    Ok(seconds.remove(0))
}

/// Times calls against each other: each is warmed up in turn (see [`WARM_UP_SECONDS`]), then
/// `repeat` (≥ 1) rounds run every call once, in order. On a shared machine whose speed drifts
/// over seconds, a drift then reaches every call alike, so ratios between them (one sequence
/// length against another, one thread count against another) are steadier than from series run
/// one after the other.
///
/// # Errors
/// The first error a call returns.
pub fn time_interleaved<E>(
    repeat: usize,
    calls: &mut [&mut dyn FnMut() -> Result<(), E>],
) -> Result<Vec<Timing>, E> {
    let seconds = seconds_interleaved(repeat, calls)?;
    Ok(seconds.into_iter().map(Timing::from_seconds).collect())
}

/// [`time_interleaved`]'s runs: each call's seconds in the order they ran.
fn seconds_interleaved<E>(
    repeat: usize,
    calls: &mut [&mut dyn FnMut() -> Result<(), E>],
) -> Result<Vec<Vec<f64>>, E> {
    for f in calls.iter_mut() {
        let warm_up = Instant::now();
        f()?;
        let mut done = 1;
        while warm_up.elapsed().as_secs_f64() < WARM_UP_SECONDS && done < WARM_UP_MAX_CALLS {
            f()?;
            done += 1;
        }
    }
    let mut seconds = vec![Vec::with_capacity(repeat.max(1)); calls.len()];
    for _ in 0..repeat.max(1) {
        for (f, seconds) in calls.iter_mut().zip(&mut seconds) {
            let start = Instant::now();
            f()?;
            seconds.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(seconds)
}

/// [`time_interleaved`] over `call` applied to each of `items` (the cases a ratio compares).
///
/// # Errors
/// The first error a call returns.
pub fn time_each<C, E>(
    items: &mut [C],
    repeat: usize,
    call: impl Fn(&mut C) -> Result<(), E>,
) -> Result<Vec<Timing>, E> {
    let call = &call;
    let mut closures: Vec<_> = items.iter_mut().map(|c| move || call(c)).collect();
    let mut refs: Vec<&mut dyn FnMut() -> Result<(), E>> = closures
        .iter_mut()
        .map(|c| c as &mut dyn FnMut() -> Result<(), E>)
        .collect();
    time_interleaved(repeat, &mut refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_and_spread() {
        let t = Timing::from_seconds(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((t.median, t.min, t.max, t.runs), (2.5, 1.0, 10.0, 4));
        assert_eq!(t.spread(), 9.0 / 2.5);
        assert_eq!(Timing::from_seconds(vec![4.0, 1.0, 2.0]).median, 2.0);
    }

    #[test]
    fn time_runs_warms_up_by_time_and_propagates_errors() {
        // Instant calls: the warm-up stops at its call limit, then 3 timed runs.
        let mut calls = 0;
        let t = time_runs::<()>(3, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((calls, t.runs), (WARM_UP_MAX_CALLS + 3, 3));
        // Calls of 0.1 s: the warm-up stops once 0.25 s have passed (3 calls), then 2 timed runs.
        let mut slow = 0;
        let t = time_runs::<()>(2, || {
            slow += 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        })
        .unwrap();
        assert_eq!((slow, t.runs), (3 + 2, 2));
        let mut n = 0;
        let err = time_runs(5, || {
            n += 1;
            if n == 2 { Err("boom") } else { Ok(()) }
        });
        assert_eq!(err.unwrap_err(), "boom");
    }

    #[test]
    fn interleaved_calls_alternate_after_each_warm_up() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut a = || {
            order.borrow_mut().push('a');
            Ok::<(), ()>(())
        };
        let mut b = || {
            order.borrow_mut().push('b');
            Ok(())
        };
        let timings = time_interleaved(3, &mut [&mut a, &mut b]).unwrap();
        assert_eq!(timings.iter().map(|t| t.runs).collect::<Vec<_>>(), [3, 3]);
        let order = order.into_inner();
        let warm = WARM_UP_MAX_CALLS;
        assert!(order[..warm].iter().all(|&c| c == 'a'));
        assert!(order[warm..2 * warm].iter().all(|&c| c == 'b'));
        assert_eq!(order[2 * warm..].iter().collect::<String>(), "ababab");
    }
}
