//! berthd's only `unsafe` code: two calls into glibc's allocator, which `libc` declares but
//! nothing wraps safely. Elsewhere (musl) both do nothing.
#![allow(unsafe_code)]

/// Makes every thread allocate from one malloc arena instead of one per thread (glibc's default
/// is up to eight per core). berthd's threads mostly wait; per-thread arenas each kept their own
/// freed memory, which no trim gave back (see docs/decisions.md, "berthd's idle memory").
/// Returns whether glibc took the setting.
///
/// Call first thing in `main`, before any other thread exists.
pub(crate) fn malloc_one_arena() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: `mallopt` only sets a tunable of the allocator; M_ARENA_MAX takes any
        // positive value. It is called before berthd starts a thread, so no allocation races
        // the change.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    false
}

/// Returns the allocator's free memory to the kernel: the free top of the heap, and whole free
/// pages inside it. Returns whether any memory was released. It holds the arena's lock while
/// it walks the heap (well under a millisecond for berthd's few MiB): an allocation on another
/// thread waits that long.
pub(crate) fn release_free_memory() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: `malloc_trim` takes the arena locks itself and only releases memory that is
        // free; it is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    false
}
