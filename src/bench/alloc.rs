//! Heap allocation counting and peak resident memory: `CountingAlloc` (defined here, installed
//! only by binaries that declare it `#[global_allocator]`), the counter it bumps, and VmHWM from
//! /proc. Nothing else in the crate touches the counter directly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// A global allocator that counts allocations (alloc, alloc_zeroed, realloc) and defers to
/// `System`. Install it in a binary with `#[global_allocator]`.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`; the counter has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations counted so far (one plain load, no probe): meaningful only once
/// `allocations()` has shown that `CountingAlloc` is installed.
#[inline]
pub fn allocation_count() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Heap allocations so far in this process, or `None` when `CountingAlloc` is not installed
/// (it allocates one probe to find out).
pub fn allocations() -> Option<u64> {
    let before = ALLOCS.load(Ordering::Relaxed);
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    let after = ALLOCS.load(Ordering::Relaxed);
    (after > before).then_some(after)
}

/// Peak resident set size (VmHWM) of this process in KiB, when /proc is there.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\tgsdnet\nVmPeak:\t  9000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB\n"), None);
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn library_tests_do_not_count_allocations() {
        // The test harness does not install CountingAlloc, so counts must be absent, not zero.
        assert_eq!(allocations(), None);
    }
}
