//! A page whose mapping the TLB and paging tests change: virtual address
//! 4 GiB (just past the boot identity map), mapped with 4 KiB pages to one
//! of two frames. Reading it shows which mapping the CPU's TLB holds.
//!
//! Every entry is written through the `paging` ops (`page_table_write`,
//! `page_table_alloc`), never by a plain store: a platform that validates
//! page tables (Xen PV) sees each one.
//!
//! A second address space maps the same address to the other frame: its
//! root is a copy of the boot root whose path to the probe page goes
//! through tables of its own, so switching roots (`address_space_switch`)
//! changes what the address reads.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use pvi_sdk::types::Gpa;
use pvi_sdk::PvOps;

/// What each frame holds at offset 0.
pub const MARKS: [u64; 2] = [0x0a0a_0a0a_0a0a_0a0a, 0x0b0b_0b0b_0b0b_0b0b];
/// Where the page is mapped.
const PROBE_VA: u64 = 1 << 32;
const PRESENT_WRITABLE: u64 = 0b11;
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

extern "C" {
    /// The boot root (boot.rs): entry 0 covers the low 512 GiB.
    static boot_pml4: [AtomicU64; 512];
    /// The boot page-directory-pointer table (boot.rs): entry 4 covers
    /// 4 GiB..5 GiB, unused by the identity map.
    static boot_pdpt: [AtomicU64; 512];
}

/// The guest-physical address of a page of this kernel: it is
/// identity-mapped, so its virtual address.
fn gpa_of(page: &Page) -> u64 {
    core::ptr::addr_of!(*page) as u64
}

/// Write one page-table entry through the backend's `page_table_write`.
///
/// # Safety
///
/// `page_table_write`'s contract for `entry` and `value`.
unsafe fn write_entry(entry: &AtomicU64, value: u64) {
    // SAFETY: the caller's contract, which is the op's.
    unsafe { crate::backend().page_table_write(entry.as_ptr() as u64, value) }
}

/// Tell the backend that `page` is a page table of `level`.
///
/// # Safety
///
/// `page_table_alloc`'s contract.
unsafe fn alloc(page: &Page, level: u8) -> bool {
    // SAFETY: the caller's contract, which is the op's.
    unsafe { crate::backend().page_table_alloc(Gpa(gpa_of(page)), level) }.is_ok()
}

/// The probe mapping, once linked into the page tables.
pub struct ProbePage {
    /// Whether the second address space could be built.
    other_root: Option<u64>,
}

static LINKED: spin::Once<ProbePage> = spin::Once::new();

impl ProbePage {
    /// Link the probe page table under PDPT entry 4, and build the second
    /// address space.
    pub fn get() -> &'static ProbePage {
        LINKED.call_once(|| {
            // SAFETY: PROBE_PT and PROBE_PD are this module's zeroed pages,
            // used for nothing else: valid (empty) tables of their level.
            unsafe {
                alloc(&PROBE_PT, LEVEL_PT);
                alloc(&PROBE_PD, LEVEL_PD);
            }
            // SAFETY: entries of this module's tables and boot.rs's entry
            // 4 of `boot_pdpt`, empty and written by nothing else; the new
            // mappings cover only 4 GiB.., which no reference uses.
            unsafe {
                write_entry(&PROBE_PD.0[0], gpa_of(&PROBE_PT) | PRESENT_WRITABLE);
                write_entry(&boot_pdpt[4], gpa_of(&PROBE_PD) | PRESENT_WRITABLE);
            }
            ProbePage {
                other_root: Self::build_other(),
            }
        })
    }

    /// The second address space: the boot root and PDPT copied, the path
    /// to the probe page through tables of its own, ending at frame 1.
    fn build_other() -> Option<u64> {
        let frame = gpa_of(&FRAMES[1]) | PRESENT_WRITABLE;
        OTHER_PT.0[0].store(frame, SeqCst);
        OTHER_PD.0[0].store(gpa_of(&OTHER_PT) | PRESENT_WRITABLE, SeqCst);
        for i in 0..512 {
            // SAFETY: boot.rs defines both tables as 512 quadwords.
            let (pdpt, root) = unsafe { (boot_pdpt[i].load(SeqCst), boot_pml4[i].load(SeqCst)) };
            OTHER_PDPT.0[i].store(pdpt, SeqCst);
            OTHER_ROOT.0[i].store(root, SeqCst);
        }
        OTHER_PDPT.0[4].store(gpa_of(&OTHER_PD) | PRESENT_WRITABLE, SeqCst);
        let first = OTHER_ROOT.0[0].load(SeqCst);
        OTHER_ROOT.0[0].store((first & 0xfff) | gpa_of(&OTHER_PDPT), SeqCst);
        // SAFETY: the four pages are this module's, now complete tables of
        // their levels, and written by nothing else from here on.
        let told = unsafe {
            alloc(&OTHER_PT, LEVEL_PT)
                && alloc(&OTHER_PD, LEVEL_PD)
                && alloc(&OTHER_PDPT, LEVEL_PDPT)
                && alloc(&OTHER_ROOT, LEVEL_ROOT)
        };
        told.then(|| gpa_of(&OTHER_ROOT))
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
        unsafe { write_entry(&PROBE_PT.0[0], frame | PRESENT_WRITABLE) };
    }

    /// The boot root and the second one, if it was built.
    pub fn roots(&self) -> Option<(u64, u64)> {
        // Only the address of boot.rs's root is taken.
        let boot = core::ptr::addr_of!(boot_pml4) as u64;
        self.other_root.map(|other| (boot, other))
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
