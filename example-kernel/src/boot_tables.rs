//! The page tables the kernel booted on, read in its own frame numbers,
//! whichever entry it came through: boot.rs's identity tables under PVH,
//! or the bootstrap tables Xen built for a PV guest (start_info's
//! `pt_base`), whose entries hold machine frames that Xen's read-only
//! machine-to-physical table turns back into the kernel's. Code that
//! builds tables next to them (the probe page) then writes every entry
//! through `page_table_write`, which translates back where it must.

use crate::platform::{entry, Entry};

// SAFETY: boot.rs defines the symbol as 512 quadwords; only its address is taken.
extern "C" {
    /// The boot root (boot.rs).
    static boot_pml4: [u64; 512];
}

/// An entry's frame field: bits 51:12.
pub const FRAME: u64 = 0x000f_ffff_ffff_f000;
/// The present bit.
pub const PRESENT: u64 = 1;

/// The root the kernel booted on: its address, which is also its
/// guest-physical (pseudo-physical on Xen PV) address.
pub fn root() -> u64 {
    match entry() {
        // Only the address of boot.rs's root is taken.
        Entry::Pvh => core::ptr::addr_of!(boot_pml4) as u64,
        Entry::XenPv => crate::xen_pv_entry::bootstrap_root(),
    }
}

/// Entry `index` of the table at `table` (an address [`root`] or a
/// present entry of these tables led to), with its frame in the kernel's
/// own numbering. A present entry on Xen PV whose machine frame is not
/// this domain's (Xen's own slots of the root) reads as not present.
///
/// # Safety
///
/// `table` is a table of the boot tables: mapped, 512 entries.
pub unsafe fn read(table: u64, index: usize) -> u64 {
    // SAFETY: the caller's contract; `index` is bounded by the table.
    let value = unsafe { (table as *const u64).add(index % 512).read_volatile() };
    match entry() {
        Entry::Pvh => value,
        Entry::XenPv if value & PRESENT == 0 => value,
        Entry::XenPv => {
            let mfn = (value & FRAME) >> 12;
            match crate::xen_pv_entry::own_frame(mfn) {
                Some(pfn) => value & !FRAME | pfn << 12,
                None => 0,
            }
        }
    }
}

/// The address of the table a present `entry` (as [`read`] gives it)
/// points at: the tables are mapped at their frames' addresses under both
/// entries (identity under PVH; Xen maps its bootstrap tables so).
pub fn table_of(entry: u64) -> u64 {
    entry & FRAME
}

/// A large page (bit 7) at the PDPT and PD levels.
const LARGE: u64 = 1 << 7;

/// The address of the 4 KiB entry that maps `va` in the boot tables, by
/// walking them from [`root`]; or why there is none (a level not
/// present, or a large page, as boot.rs maps the low 4 GiB).
pub fn leaf_entry(va: u64) -> Result<u64, &'static str> {
    let mut table = root();
    for shift in [39, 30, 21] {
        // SAFETY: `table` is the root or a table a present entry of these
        // tables points at; the index is bounded.
        let entry = unsafe { read(table, (va >> shift & 511) as usize) };
        if entry & PRESENT == 0 {
            return Err("a level of the boot tables does not map it");
        }
        if shift != 39 && entry & LARGE != 0 {
            return Err("the boot tables map it with a large page");
        }
        table = table_of(entry);
    }
    Ok(table + 8 * (va >> 12 & 511))
}

/// The entry at address `entry` (as [`leaf_entry`] gives it), read as
/// [`read`] reads.
///
/// # Safety
///
/// `entry` is the address of an entry of the boot tables.
pub unsafe fn read_at(entry: u64) -> u64 {
    // SAFETY: the caller's contract: the page holding it is a table.
    unsafe { read(entry & !0xfff, (entry & 0xfff) as usize / 8) }
}
