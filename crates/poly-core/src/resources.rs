//! The resource policy, in one place (docs/design.md §3): every size derived from user input is
//! computed with checked arithmetic and compared with one memory budget *before* anything is
//! allocated, and thread counts are capped before a pool is built.
//!
//! The budget defaults to half of the memory the process can have: the least of physical memory,
//! the cgroup's `memory.max` and the address-space limit (`ulimit -v`), or 8 GiB where none can be
//! read. It can be changed for the whole process with [`set_memory_budget`] (the CLI's
//! `--max-memory`). It bounds single allocations derived from input sizes — an output tensor, a
//! feature matrix, a sketch's random matrices, a decoding state — not the sum of everything a
//! process holds, so it turns a corrupt header or a mistyped flag into an error instead of an
//! abort, without second-guessing legitimate large problems.

use crate::error::{Error, Result};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// 0 means "not set": use [`default_memory_budget`].
static BUDGET: AtomicU64 = AtomicU64::new(0);

/// Where physical memory cannot be read, the budget is this.
const FALLBACK_BUDGET: u64 = 8 << 30;

/// Half of the memory available to the process (see the module documentation), or 8 GiB where
/// it cannot be read.
pub fn default_memory_budget() -> u64 {
    static DEFAULT: OnceLock<u64> = OnceLock::new();
    *DEFAULT.get_or_init(|| available_memory().map_or(FALLBACK_BUDGET, |bytes| bytes / 2))
}

/// The least of physical memory, the cgroup limit and the address-space limit that can be read.
fn available_memory() -> Option<u64> {
    [physical_memory(), cgroup_limit(), address_space_limit()]
        .into_iter()
        .flatten()
        .min()
}

/// cgroup v2 `memory.max` (absent or `max` when unlimited).
fn cgroup_limit() -> Option<u64> {
    std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The soft `Max address space` of `/proc/self/limits` (`unlimited` when not set).
fn address_space_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The budget in force: the last [`set_memory_budget`], else [`default_memory_budget`].
pub fn memory_budget() -> u64 {
    match BUDGET.load(Ordering::Relaxed) {
        0 => default_memory_budget(),
        bytes => bytes,
    }
}

/// Sets the process-wide budget (`None` restores the default).
///
/// # Errors
/// [`Error::InvalidParameter`] for a budget of 0 bytes.
pub fn set_memory_budget(bytes: Option<u64>) -> Result<()> {
    match bytes {
        Some(0) => Err(Error::InvalidParameter {
            name: "max-memory",
            value: "0".into(),
            expected: "a budget of at least 1 byte",
        }),
        Some(b) => {
            BUDGET.store(b, Ordering::Relaxed);
            Ok(())
        }
        None => {
            BUDGET.store(0, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// The product of `factors`, or an error naming `what` if it overflows `usize`.
///
/// # Errors
/// [`Error::ResourceLimit`] (with `needed_bytes` saturated at `u64::MAX`) on overflow.
pub fn checked_product(what: &'static str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or(Error::ResourceLimit {
            what,
            needed_bytes: u64::MAX,
            limit_bytes: memory_budget(),
        })
}

/// Checks that `count` elements of `element_bytes` each fit the budget; returns their byte size.
///
/// # Errors
/// [`Error::ResourceLimit`] naming `what`, the bytes needed and the budget.
pub fn check_allocation(what: &'static str, count: usize, element_bytes: usize) -> Result<u64> {
    let limit = memory_budget();
    let needed = (count as u64).saturating_mul(element_bytes as u64);
    if needed > limit {
        return Err(Error::ResourceLimit {
            what,
            needed_bytes: needed,
            limit_bytes: limit,
        });
    }
    Ok(needed)
}

/// [`checked_product`] of `factors`, then [`check_allocation`] of that many elements.
///
/// # Errors
/// [`Error::ResourceLimit`] naming `what`.
pub fn check_elements(
    what: &'static str,
    factors: &[usize],
    element_bytes: usize,
) -> Result<usize> {
    let count = checked_product(what, factors)?;
    check_allocation(what, count, element_bytes)?;
    Ok(count)
}

/// The most threads a pool may have: 4 per logical CPU (at least 8). More only spins.
pub fn max_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_mul(4)
        .max(8)
}

/// Checks a requested thread count against [`max_threads`], before any thread is spawned.
///
/// # Errors
/// [`Error::InvalidParameter`] naming `threads`, the value and the cap.
pub fn check_threads(threads: usize) -> Result<()> {
    if threads > max_threads() {
        return Err(Error::InvalidParameter {
            name: "threads",
            value: format!("{threads} (at most {} here)", max_threads()),
            expected: "at most 4 threads per logical CPU",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_allocations_are_checked() {
        assert_eq!(checked_product("x", &[3, 4, 5]).unwrap(), 60);
        assert!(matches!(
            checked_product("shape", &[1 << 40, 1 << 40]),
            Err(Error::ResourceLimit { what: "shape", .. })
        ));
        let limit = memory_budget();
        assert!(check_allocation("ok", 1024, 8).is_ok());
        match check_allocation("output", usize::MAX / 2, 8) {
            Err(Error::ResourceLimit {
                what,
                needed_bytes,
                limit_bytes,
            }) => {
                assert_eq!(
                    (what, needed_bytes, limit_bytes),
                    ("output", u64::MAX, limit)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(check_elements("big", &[1 << 20, 1 << 20, 1 << 20], 4).is_err());
    }

    #[test]
    fn the_default_budget_follows_the_machine() {
        let budget = default_memory_budget();
        match available_memory() {
            Some(total) => {
                assert_eq!(budget, total / 2);
                assert!(physical_memory().is_none_or(|p| total <= p));
            }
            None => assert_eq!(budget, FALLBACK_BUDGET),
        }
        assert!(set_memory_budget(Some(0)).is_err());
    }

    #[test]
    fn thread_counts_beyond_the_cap_are_refused() {
        assert!(check_threads(1).is_ok());
        assert!(check_threads(max_threads()).is_ok());
        assert!(check_threads(max_threads() + 1).is_err());
        assert!(check_threads(1_000_000).is_err());
    }
}
