//! A page whose mapping the TLB test changes: virtual address 4 GiB (just
//! past the boot identity map), mapped with 4 KiB pages to one of two
//! frames. Reading it shows which mapping the CPU's TLB holds.

use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// What each frame holds at offset 0.
pub const MARKS: [u64; 2] = [0x0a0a_0a0a_0a0a_0a0a, 0x0b0b_0b0b_0b0b_0b0b];
/// Where the page is mapped.
const PROBE_VA: u64 = 1 << 32;
const PRESENT_WRITABLE: u64 = 0b11;

#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);

static PROBE_PD: Page = Page([const { AtomicU64::new(0) }; 512]);
static PROBE_PT: Page = Page([const { AtomicU64::new(0) }; 512]);
static FRAMES: [Page; 2] = [
    Page([const { AtomicU64::new(MARKS[0]) }; 512]),
    Page([const { AtomicU64::new(MARKS[1]) }; 512]),
];

extern "C" {
    /// The boot page-directory-pointer table (boot.rs): entry 4 covers
    /// 4 GiB..5 GiB, unused by the identity map.
    static boot_pdpt: [AtomicU64; 512];
}

/// The probe mapping, once linked into the page tables.
pub struct ProbePage;

static LINKED: spin::Once<ProbePage> = spin::Once::new();

impl ProbePage {
    /// Link the probe page table under PDPT entry 4.
    pub fn get() -> &'static ProbePage {
        LINKED.call_once(|| {
            let pd = core::ptr::addr_of!(PROBE_PD) as u64;
            let pt = core::ptr::addr_of!(PROBE_PT) as u64;
            PROBE_PD.0[0].store(pt | PRESENT_WRITABLE, SeqCst);
            // SAFETY: boot.rs defines `boot_pdpt` as 512 quadwords; entry 4
            // is empty and nothing else writes it.
            unsafe { boot_pdpt[4].store(pd | PRESENT_WRITABLE, SeqCst) };
            ProbePage
        })
    }

    /// Map frame `which` and flush this CPU's entry for the page.
    pub fn map(&self, which: usize) {
        self.remap_without_flush(which);
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(PROBE_VA));
    }

    /// Point the page at frame `which` and leave every TLB as it is.
    pub fn remap_without_flush(&self, which: usize) {
        let frame = core::ptr::addr_of!(FRAMES[which]) as u64;
        PROBE_PT.0[0].store(frame | PRESENT_WRITABLE, SeqCst);
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
