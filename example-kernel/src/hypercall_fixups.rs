//! Hypercall instructions that fault (`pvi_sdk::fixup`): the exception
//! handler resumes them at their landing, which returns "unsupported", so
//! the op's chain falls back. On nested KVM here, the host answers a
//! `vmcall` by writing to the instruction's own address, which faults on
//! the read-only text.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use pvi_sdk::fixup::{landing, table};

/// Hypercalls resumed as "unsupported" so far.
pub static FIXED_UP: AtomicU64 = AtomicU64::new(0);

/// Where to resume after exception `name` at `rip`, if `rip` is a
/// hypercall instruction; the first time, say so on the console.
pub fn resume(rip: u64, name: &str) -> Option<u64> {
    let to = landing(table(), rip as usize)?;
    if FIXED_UP.fetch_add(1, SeqCst) == 0 {
        let _ = writeln!(
            crate::console::Console,
            "hypercall at {rip:#x} raised {name}: treated as unsupported, and the op falls back (reported once)"
        );
    }
    Some(to as u64)
}
