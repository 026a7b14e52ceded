//! A page whose mapping the TLB and paging tests change: virtual address
//! 4 GiB (past the boot identity map, and past what Xen maps for a small
//! PV domain), mapped with 4 KiB pages to one of two frames. Reading it
//! shows which mapping the CPU's TLB holds.
//!
//! Every entry is written through the `paging` ops (`page_table_write`,
//! `page_table_alloc`), never by a plain store: a platform that validates
//! page tables (Xen PV) sees each one, and translates the kernel's frame
//! numbers into its own. The boot tables are read through
//! [`crate::boot_tables`], in the kernel's frame numbers, so the same code
//! links the page under boot.rs's root and under Xen's bootstrap root.
//!
//! A second address space maps the same address to the other frame: its
//! root is a copy of the boot root's lower half whose path to the probe
//! page goes through tables of its own, so switching roots
//! (`address_space_switch`) changes what the address reads.

use crate::boot_tables::{self, PRESENT};
use core::sync::atomic::AtomicU64;
use pvi_sdk::types::Gpa;
use pvi_sdk::PvOps;

/// What each frame holds at offset 0.
pub const MARKS: [u64; 2] = [0x0a0a_0a0a_0a0a_0a0a, 0x0b0b_0b0b_0b0b_0b0b];
/// Where the page is mapped.
const PROBE_VA: u64 = 1 << 32;
/// Its slot in the root's first PDPT (each entry covers 1 GiB).
const PROBE_PDPT_SLOT: usize = 4;
const PRESENT_WRITABLE: u64 = 0b11;
/// The root's lower half: the kernel lives there under every entry (the
/// upper half is Xen's on Xen PV), and only it is copied.
const LOWER_HALF: usize = 256;
/// The page-table levels, as `page_table_alloc` numbers them.
const LEVEL_PT: u8 = 1;
const LEVEL_PD: u8 = 2;
const LEVEL_PDPT: u8 = 3;
const LEVEL_ROOT: u8 = 4;

#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);

/// A zeroed page: an empty page table.
macro_rules! empty {
    () => {
        Page([const { AtomicU64::new(0) }; 512])
    };
}

static PROBE_PD: Page = empty!();
static PROBE_PT: Page = empty!();
static FRAMES: [Page; 2] = [
    Page([const { AtomicU64::new(MARKS[0]) }; 512]),
    Page([const { AtomicU64::new(MARKS[1]) }; 512]),
];
/// The second address space: root, PDPT, PD and PT of its own.
static OTHER_ROOT: Page = empty!();
static OTHER_PDPT: Page = empty!();
static OTHER_PD: Page = empty!();
static OTHER_PT: Page = empty!();

/// The guest-physical address of a page of this kernel: the image is
/// mapped at its (pseudo-)physical addresses under both entries.
fn gpa_of(page: &Page) -> u64 {
    core::ptr::addr_of!(*page) as u64
}

/// Write entry `index` of the table at `table` through the backend's
/// `page_table_write`: `value` names the kernel's own frame.
///
/// # Safety
///
/// `page_table_write`'s contract for that entry and `value`.
unsafe fn write_entry(table: u64, index: usize, value: u64) {
    let entry = table + 8 * (index % 512) as u64;
    // SAFETY: the caller's contract, which is the op's.
    unsafe { crate::backend().page_table_write(entry, value) }
}

/// Tell the backend that `page` is a page table of `level`.
///
/// # Safety
///
/// `page_table_alloc`'s contract.
unsafe fn alloc(page: &Page, level: u8) -> Result<(), &'static str> {
    // SAFETY: the caller's contract, which is the op's.
    unsafe { crate::backend().page_table_alloc(Gpa(gpa_of(page)), level) }
        .map_err(|_| "page_table_alloc refused one of its tables")
}

/// The probe mapping, once linked into the page tables.
pub struct ProbePage {
    /// The second address space's root, or why it could not be built.
    other_root: Result<u64, &'static str>,
}

static LINKED: spin::Once<Result<ProbePage, &'static str>> = spin::Once::new();

impl ProbePage {
    /// The page, linked on first use under the boot root's PDPT entry 4
    /// with the second address space built; or why it could not be.
    pub fn get() -> Result<&'static ProbePage, &'static str> {
        LINKED.call_once(Self::link).as_ref().map_err(|why| *why)
    }

    /// Link the probe page table under the boot root's first PDPT.
    fn link() -> Result<ProbePage, &'static str> {
        let root = boot_tables::root();
        // SAFETY: the boot root, mapped, 512 entries.
        let first = unsafe { boot_tables::read(root, 0) };
        if first & PRESENT == 0 {
            return Err("the boot root maps nothing in its first 512 GiB");
        }
        let pdpt = boot_tables::table_of(first);
        // SAFETY: a table the boot root's present entry points at.
        if unsafe { boot_tables::read(pdpt, PROBE_PDPT_SLOT) } & PRESENT != 0 {
            return Err("the boot tables already map 4 GiB..5 GiB");
        }
        // SAFETY: PROBE_PT and PROBE_PD are this module's zeroed pages,
        // used for nothing else: valid (empty) tables of their level.
        unsafe {
            alloc(&PROBE_PT, LEVEL_PT)?;
            alloc(&PROBE_PD, LEVEL_PD)?;
        }
        // SAFETY: this module's tables and the boot PDPT's empty entry 4;
        // the new mappings cover only 4 GiB.., which no reference uses.
        unsafe {
            write_entry(gpa_of(&PROBE_PD), 0, gpa_of(&PROBE_PT) | PRESENT_WRITABLE);
            write_entry(pdpt, PROBE_PDPT_SLOT, gpa_of(&PROBE_PD) | PRESENT_WRITABLE);
        }
        Ok(ProbePage {
            other_root: Self::build_other(root, pdpt),
        })
    }

    /// The second address space: the boot root's lower half and first
    /// PDPT copied, the path to the probe page through tables of its own,
    /// ending at frame 1. Each table is given to the backend empty, then
    /// filled through `page_table_write`, bottom up, so that a validating
    /// hypervisor meets only complete tables below the entry it checks.
    fn build_other(root: u64, pdpt: u64) -> Result<u64, &'static str> {
        let frame = gpa_of(&FRAMES[1]) | PRESENT_WRITABLE;
        // Each entry written names a frame of the kernel: FRAMES[1], a
        // table built here, or what the boot tables hold.

        // SAFETY: this module's four tables, valid at every step; the root
        // built maps the kernel as the boot root does.
        unsafe {
            alloc(&OTHER_PT, LEVEL_PT)?;
            write_entry(gpa_of(&OTHER_PT), 0, frame);
            alloc(&OTHER_PD, LEVEL_PD)?;
            write_entry(gpa_of(&OTHER_PD), 0, gpa_of(&OTHER_PT) | PRESENT_WRITABLE);
            alloc(&OTHER_PDPT, LEVEL_PDPT)?;
            for i in 0..512 {
                let entry = if i == PROBE_PDPT_SLOT {
                    gpa_of(&OTHER_PD) | PRESENT_WRITABLE
                } else {
                    boot_tables::read(pdpt, i)
                };
                if entry & PRESENT != 0 {
                    write_entry(gpa_of(&OTHER_PDPT), i, entry);
                }
            }
            alloc(&OTHER_ROOT, LEVEL_ROOT)?;
            for i in 0..LOWER_HALF {
                let mut entry = boot_tables::read(root, i);
                if i == 0 {
                    entry = entry & !boot_tables::FRAME | gpa_of(&OTHER_PDPT);
                }
                if entry & PRESENT != 0 {
                    write_entry(gpa_of(&OTHER_ROOT), i, entry);
                }
            }
        }
        Ok(gpa_of(&OTHER_ROOT))
    }

    /// Map frame `which` and flush this CPU's entry for the page.
    pub fn map(&self, which: usize) {
        self.remap_without_flush(which);
        crate::backend().flush_tlb_local(PROBE_VA, 1);
    }

    /// Point the page at frame `which` and leave every TLB as it is.
    pub fn remap_without_flush(&self, which: usize) {
        let frame = gpa_of(&FRAMES[which]);
        // SAFETY: the probe page's own entry; its frames live for ever and
        // no reference reaches them through this address.
        unsafe { write_entry(gpa_of(&PROBE_PT), 0, frame | PRESENT_WRITABLE) };
    }

    /// The boot root and the second one, or why the second is missing.
    pub fn roots(&self) -> Result<(u64, u64), &'static str> {
        self.other_root.map(|other| (boot_tables::root(), other))
    }

    /// Where the page is mapped.
    pub fn address(&self) -> u64 {
        PROBE_VA
    }

    /// An address in the next page, which nothing maps.
    pub fn unmapped_neighbour(&self) -> u64 {
        PROBE_VA + 4096
    }

    /// The first quadword through the mapping.
    pub fn read(&self) -> u64 {
        // SAFETY: `get` linked a present, writable 4 KiB mapping at
        // PROBE_VA to one of the FRAMES, which live for ever.
        unsafe { (PROBE_VA as *const u64).read_volatile() }
    }
}
