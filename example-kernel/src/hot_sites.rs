//! The kernel's patchable hot-op call sites (`pvi_sdk::patch`), between the
//! linker script's `__pvi_sites_start` and `__pvi_sites_end`.

use pvi_backends::select::Selection;
use pvi_sdk::patch::{apply, Site};

extern "C" {
    static __pvi_sites_start: Site;
    static __pvi_sites_end: Site;
}

/// Every recorded site.
pub fn sites() -> &'static [Site] {
    // SAFETY: the linker script puts the `.pvi_sites` records, each a
    // `Site` laid out by the SDK's macros, between the two symbols, 8-byte
    // aligned; they are never written.
    unsafe {
        let start = core::ptr::addr_of!(__pvi_sites_start);
        let end = core::ptr::addr_of!(__pvi_sites_end);
        let count = (end as usize - start as usize) / core::mem::size_of::<Site>();
        core::slice::from_raw_parts(start, count)
    }
}

/// Rewrite the sites of every hot op the selected backend serves natively
/// to the bare instruction; how many were rewritten. Call it on the boot
/// CPU before the others start: the kernel's text is identity-mapped
/// writable (boot.rs), so there are no permissions to lift and restore.
pub fn patch(selection: &Selection) -> usize {
    // SAFETY: the records are the kernel's own; its text is writable; the
    // caller runs this on the boot CPU before any other CPU starts.
    unsafe { apply(sites(), |op| selection.serving(op.name()).is_none()) }
}
