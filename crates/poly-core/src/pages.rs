//! Large zeroed buffers on transparent huge pages. A fresh buffer faults once per page on first
//! touch; with 4 KiB pages a 134 MB attention output takes 32768 faults, which in the VMs this
//! project is measured on cost as much as a narrow-window attention itself (docs/design.md).
//! Asking for 2 MiB pages (`MADV_HUGEPAGE`, honoured where transparent huge pages are enabled in
//! `madvise` or `always` mode) makes that 64 faults. Elsewhere it is a plain zeroed vector.

/// From this many bytes on a buffer asks for huge pages (smaller ones rarely span an aligned
/// 2 MiB page).
const HUGE_PAGE_THRESHOLD: usize = 8 << 20;

/// A vector of `len` default values, on huge pages when it is large, every page already touched
/// by the calling thread.
///
/// The touch matters: calloc hands out fresh pages untouched, and the engines' worker threads
/// would then fault them in concurrently, in the middle of their tiles. In the VMs this project
/// is measured on, that made a fresh 2 MB output's first calls about 2.5× slower than later ones
/// (`examples/first_calls.rs` at n = 1024). Writing the zeros here (instead of calloc's lazy
/// zero pages) takes each fault once, on this thread, for the cost of a memset.
pub(crate) fn zeroed<T: Copy + Default>(len: usize) -> Vec<T> {
    let bytes = len.saturating_mul(size_of::<T>());
    let mut v: Vec<T> = Vec::with_capacity(len);
    if bytes >= HUGE_PAGE_THRESHOLD {
        advise_huge_pages(v.as_mut_ptr().cast::<u8>(), bytes);
    }
    v.resize(len, T::default());
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: [start, end) lies inside the allocation of `bytes` bytes just made, which this
        // process owns and nothing else references yet; MADV_HUGEPAGE only changes how the kernel
        // backs those pages, never their contents or validity. Its result is ignored: without
        // huge pages the buffer is simply backed by small ones.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _bytes: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn large_and_small_buffers_are_zeroed_with_their_length() {
        for len in [0, 1, 1000, (8 << 20) / 4 + 3] {
            let v: Vec<f32> = super::zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
