//! Records the linker script gathers into a section between two symbols
//! (patchable call sites, hypercall fix-ups).

/// The records of type `T` from `start` up to `end`.
///
/// # Safety
///
/// `start` and `end` must bound a run of `T`s laid out back to back,
/// aligned for `T` and never written, as the linker script places them.
pub unsafe fn records<T>(start: *const T, end: *const T) -> &'static [T] {
    let count = (end as usize - start as usize) / core::mem::size_of::<T>();
    // SAFETY: the caller vouches for the run of `count` records at `start`.
    unsafe { core::slice::from_raw_parts(start, count) }
}
