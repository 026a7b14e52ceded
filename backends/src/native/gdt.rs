//! `lgdt`: the native end of `gdt_load`.

use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};
use x86_64::instructions::tables::lgdt;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// The most 8-byte descriptors a GDT has: its limit is 16 bits.
pub const MAX_DESCRIPTORS: u16 = 8192;

/// The `lgdt` limit of `entries` descriptors at `table`, or why they are
/// no table: none, more than a limit can cover, or a non-canonical
/// address (which `lgdt` would fault on).
pub fn limit(table: u64, entries: u16) -> Result<u16, PvError> {
    let invalid = PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Native);
    if entries == 0 || entries > MAX_DESCRIPTORS || VirtAddr::try_new(table).is_err() {
        return Err(invalid);
    }
    // 8192 descriptors end at 65535: the sum is taken wide.
    Ok((u32::from(entries) * 8 - 1) as u16)
}

/// Load the `entries` descriptors at `table` as this CPU's GDT.
///
/// # Safety
///
/// The op's contract (`gdt_load`): valid descriptors that stay mapped and
/// unchanged while loaded, naming every selector in use; ring 0.
pub unsafe fn load(table: u64, entries: u16) -> Result<(), PvError> {
    let pointer = DescriptorTablePointer {
        limit: limit(table, entries)?,
        base: VirtAddr::new_truncate(table),
    };
    // SAFETY: the caller's contract keeps the table valid while loaded; ring 0 may lgdt.
    unsafe { lgdt(&pointer) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_covers_the_descriptors_and_nothing_else_is_a_table() {
        assert_eq!(limit(0x10_0000, 5), Ok(39));
        assert_eq!(limit(0x10_0000, MAX_DESCRIPTORS), Ok(u16::MAX));
        assert!(limit(0x10_0000, 0).is_err());
        assert!(limit(0x10_0000, MAX_DESCRIPTORS + 1).is_err());
        assert!(limit(0x0000_8000_0000_0000, 5).is_err());
    }
}
