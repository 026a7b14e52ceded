//! The kernel's text, mapped read-only: a stray write into code faults
//! instead of corrupting it. Under PVH, boot maps everything writable
//! with 2 MiB pages; [`protect`] remaps each 2 MiB page holding text with
//! 4 KiB pages, the text ones read-only, and turns on CR0.WP so ring 0
//! obeys them. On Xen PV the kernel runs in ring 3 on Xen's bootstrap
//! tables, 4 KiB pages that Xen maps writable: [`protect`] clears the
//! writable bit of each text page's entry through `page_table_write`
//! (mmu_update), which ring 3 always obeys.
//! Patching call sites lifts the protection for its while
//! ([`with_text_writable`]) and restores it after.

use crate::boot_tables;
use crate::platform::Entry;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr0, Cr0Flags};
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};
use x86_64::{PhysAddr, VirtAddr};

// SAFETY: boot.rs's 2,048 quadwords and the linker script's text bounds, with these types.
extern "C" {
    /// boot.rs: four page directories of 2 MiB pages, 0 to 4 GiB.
    static boot_pd: [AtomicU64; 2048];
    static __text_start: u8;
    static __text_end: u8;
}

const TWO_MIB: usize = 2 << 20;
/// 2 MiB pages the text may span (it is about 170 KiB).
const TABLES: usize = 2;

struct Tables(UnsafeCell<[PageTable; TABLES]>);
// SAFETY: written only by `protect` and `set_text_writable`, on the boot
// CPU before the others start (their callers' contract).
unsafe impl Sync for Tables {}

static PAGE_TABLES: Tables = Tables(UnsafeCell::new([const { PageTable::new() }; TABLES]));
static PROTECTED: AtomicBool = AtomicBool::new(false);

/// The text's bounds, page-aligned by the linker script.
fn text() -> (usize, usize) {
    // Linker-script symbols: only their addresses are taken.
    (
        core::ptr::addr_of!(__text_start) as usize,
        core::ptr::addr_of!(__text_end) as usize,
    )
}

fn is_text(addr: usize) -> bool {
    let (start, end) = text();
    (start..end).contains(&addr)
}

/// Why the text could not be protected.
pub enum NotProtected {
    /// It spans more 2 MiB pages than there are tables for.
    TooLarge,
    /// A 2 MiB page holding it is not the large page boot.rs made.
    NotALargePage(usize),
    /// On Xen PV: a text page has no 4 KiB entry in the bootstrap tables.
    NoEntry(usize, &'static str),
}

impl core::fmt::Display for NotProtected {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            NotProtected::TooLarge => write!(f, "it spans more than {TABLES} 2 MiB pages"),
            NotProtected::NotALargePage(at) => {
                write!(f, "the 2 MiB page at {at:#x} is not one large page")
            }
            NotProtected::NoEntry(at, why) => write!(f, "the page at {at:#x}: {why}"),
        }
    }
}

/// Map the text read-only: under PVH, and turn on CR0.WP; on Xen PV,
/// through `page_table_write`.
///
/// # Safety
///
/// Once, on the boot CPU, before the others start, with the boot tables
/// (boot.rs's, or Xen's bootstrap ones) in CR3.
pub unsafe fn protect() -> Result<(), NotProtected> {
    match crate::platform::entry() {
        // SAFETY: the caller's contract.
        Entry::Pvh => unsafe { protect_with_wp() },
        Entry::XenPv => {
            // Every entry is found before any is changed.
            let (start, end) = text();
            for addr in (start..end).step_by(4096) {
                boot_tables::leaf_entry(addr as u64)
                    .map_err(|why| NotProtected::NoEntry(addr, why))?;
            }
            // SAFETY: the caller's contract; the text pages' entries
            // exist, found above.
            unsafe { set_writable_through_op(false) };
            PROTECTED.store(true, SeqCst);
            Ok(())
        }
    }
}

/// Set or clear the writable bit of each text page's 4 KiB entry in the
/// boot tables through `page_table_write`, then flush this CPU's TLB for
/// them (Xen PV).
///
/// # Safety
///
/// On the boot CPU before the others start (other CPUs' TLBs are not
/// flushed); every text page has an entry ([`boot_tables::leaf_entry`]).
unsafe fn set_writable_through_op(writable: bool) {
    use pvi_sdk::PvOps;
    let (start, end) = text();
    let ops = crate::backend();
    for addr in (start..end).step_by(4096) {
        let Ok(entry) = boot_tables::leaf_entry(addr as u64) else {
            continue;
        };
        // SAFETY: an entry of the boot tables, read in the kernel's frame
        // numbers as page_table_write takes them.
        let value = unsafe { boot_tables::read_at(entry) };
        let value = if writable {
            value | Flags::WRITABLE.bits()
        } else {
            value & !Flags::WRITABLE.bits()
        };
        // SAFETY: a text page's entry, to the frame it maps; only its
        // writable bit changes (nothing but patching writes the text).
        unsafe { ops.page_table_write(entry, value) };
    }
    ops.flush_tlb_local(start as u64, ((end - start) / 4096) as u64);
}

/// [`protect`] under PVH: 4 KiB pages for the text, and CR0.WP.
///
/// # Safety
///
/// As [`protect`]'s, with boot.rs's page tables in CR3.
unsafe fn protect_with_wp() -> Result<(), NotProtected> {
    let (start, end) = text();
    let first = start / TWO_MIB;
    let last = (end - 1) / TWO_MIB;
    if last - first + 1 > TABLES {
        return Err(NotProtected::TooLarge);
    }
    for (table, region) in (first..=last).enumerate() {
        // SAFETY: boot.rs's directories hold 2048 entries (4 GiB) and the
        // kernel lies below 4 GiB.
        let entry = unsafe { &boot_pd[region] };
        let large = entry.load(SeqCst);
        if large & Flags::HUGE_PAGE.bits() == 0 {
            return Err(NotProtected::NotALargePage(region * TWO_MIB));
        }
        // SAFETY: no other CPU runs, and nothing else holds the tables.
        let pt = unsafe { &mut (*PAGE_TABLES.0.get())[table] };
        for (i, e) in pt.iter_mut().enumerate() {
            let addr = region * TWO_MIB + i * 4096;
            let mut flags = Flags::PRESENT;
            if !is_text(addr) {
                flags |= Flags::WRITABLE;
            }
            e.set_addr(PhysAddr::new(addr as u64), flags);
        }
        // Identity-mapped: the table's address is its physical address.
        let pt_addr = pt as *const PageTable as u64;
        entry.store(pt_addr | (Flags::PRESENT | Flags::WRITABLE).bits(), SeqCst);
        tlb::flush_all();
    }
    // SAFETY: WP only makes ring 0 honour read-only pages; nothing but
    // patching writes the text, and it lifts the protection first.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
    PROTECTED.store(true, SeqCst);
    Ok(())
}

/// Make the text pages writable (`true`) or read-only again.
///
/// # Safety
///
/// On the boot CPU before the others start (other CPUs' TLBs are not
/// flushed).
unsafe fn set_text_writable(writable: bool) {
    if crate::platform::entry() == Entry::XenPv {
        // SAFETY: the caller's contract; `protect` found every entry.
        return unsafe { set_writable_through_op(writable) };
    }
    let (start, end) = text();
    let first = start / TWO_MIB;
    // SAFETY: the caller's contract; `protect` filled these tables.
    let tables = unsafe { &mut *PAGE_TABLES.0.get() };
    for addr in (start..end).step_by(4096) {
        let entry = &mut tables[addr / TWO_MIB - first][(addr % TWO_MIB) / 4096];
        let mut flags = entry.flags();
        flags.set(Flags::WRITABLE, writable);
        entry.set_flags(flags);
        tlb::flush(VirtAddr::new(addr as u64));
    }
}

/// Run `f` with the text writable, then read-only again (if it was).
pub fn with_text_writable<T>(f: impl FnOnce() -> T) -> T {
    let protected = PROTECTED.load(SeqCst);
    if protected {
        // SAFETY: patching, our only caller, runs on the boot CPU before
        // the others start.
        unsafe { set_text_writable(true) };
    }
    let result = f();
    if protected {
        // SAFETY: as above.
        unsafe { set_text_writable(false) };
    }
    result
}

/// Whether the page holding `addr` is read-only to the kernel now: its
/// entry without the writable bit, and under PVH CR0.WP on (ring 3, Xen
/// PV's, always obeys the bit).
pub fn is_read_only(addr: usize) -> bool {
    if crate::platform::entry() == Entry::XenPv {
        let Ok(entry) = boot_tables::leaf_entry(addr as u64) else {
            return false;
        };
        // SAFETY: an entry of the boot tables, found by the walk.
        let value = unsafe { boot_tables::read_at(entry) };
        return PROTECTED.load(SeqCst) && is_text(addr) && value & Flags::WRITABLE.bits() == 0;
    }
    if !Cr0::read().contains(Cr0Flags::WRITE_PROTECT) || !PROTECTED.load(SeqCst) || !is_text(addr) {
        return false;
    }
    let first = text().0 / TWO_MIB;
    // SAFETY: read-only access to the tables `protect` filled; writers run
    // only before other CPUs start.
    let tables = unsafe { &*PAGE_TABLES.0.get() };
    !tables[addr / TWO_MIB - first][(addr % TWO_MIB) / 4096]
        .flags()
        .contains(Flags::WRITABLE)
}
