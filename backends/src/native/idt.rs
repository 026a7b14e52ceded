//! `lidt`: the native end of `trap_table_load`.

use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// The most gates an IDT has: one per vector.
pub const MAX_GATES: u16 = 256;

/// The `lidt` limit of `entries` 16-byte gates at `table`, or why they
/// are no table: none, more than there are vectors, or a non-canonical
/// address (which `lidt` would fault on).
pub fn limit(table: u64, entries: u16) -> Result<u16, PvError> {
    let invalid = PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Native);
    if entries == 0 || entries > MAX_GATES || VirtAddr::try_new(table).is_err() {
        return Err(invalid);
    }
    Ok(entries * 16 - 1)
}

/// Load the `entries` gates at `table` as this CPU's IDT.
///
/// # Safety
///
/// The op's contract (`trap_table_load`): valid gates that stay mapped and
/// unchanged while loaded, with handlers for the CPU's frame; ring 0.
pub unsafe fn load(table: u64, entries: u16) -> Result<(), PvError> {
    let pointer = DescriptorTablePointer {
        limit: limit(table, entries)?,
        base: VirtAddr::new_truncate(table),
    };
    // SAFETY: the caller's contract: the table is valid and outlives its
    // use, and the kernel runs in ring 0, where `lidt` is allowed.
    unsafe { lidt(&pointer) };
    Ok(())
}
