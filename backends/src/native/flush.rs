//! Remote TLB flush on bare metal: a flush IPI to each target, a local
//! flush, and a bounded wait for every target's acknowledgement.
//!
//! A flush is of everything (global pages and every PCID included) or of
//! a range of pages. The range travels beside a generation counter: a
//! target that sees a newer request begun while it read the range flushes
//! everything instead, which covers both.

use super::tsc;
use crate::percpu::MAX_CPUS;
use crate::platform;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use pvi_sdk::arch::rdtsc;
use pvi_sdk::types::{ApicId, CpuSet, ErrorKind, ErrorOrigin, PvError, Vector};
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::VirtAddr;

static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The generation whose range `RANGE_START`/`RANGE_PAGES` hold.
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
static RANGE_START: AtomicU64 = AtomicU64::new(0);
static RANGE_PAGES: AtomicU64 = AtomicU64::new(0);
/// Past this many pages one full flush is cheaper than `invlpg` each (the
/// figure Linux's `tlb_single_page_flush_ceiling` defaults to).
pub(crate) const FULL_FLUSH_PAGES: u64 = 32;
/// A range that means everything.
const ALL: u64 = u64::MAX;
static SEEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// How long to wait for acknowledgements before giving up (a CPU that
/// never answers must not hang the caller).
const ACK_TIMEOUT_NS: u64 = 100_000_000;
const ACK_SPIN_LIMIT: u64 = 200_000_000;

/// Flush every translation this CPU caches, global pages and every PCID
/// included: toggling CR4.PGE does all of that (Intel SDM vol. 3A,
/// 4.10.4.1), where reloading CR3 keeps global pages and other PCIDs.
fn flush_local_all() {
    let cr4 = Cr4::read_raw();
    // SAFETY: CR4 is written back unchanged but for PGE, toggled and then
    // restored; ring 0. Nothing else changes.
    unsafe {
        Cr4::write_raw(cr4 ^ Cr4Flags::PAGE_GLOBAL.bits());
        Cr4::write_raw(cr4);
    }
}

/// Flush `pages` pages from `start` on this CPU: `invlpg` each (which
/// drops a global translation too), or everything for a long range or
/// where PCIDs are on (`invlpg` reaches only the current PCID).
pub(crate) fn flush_local(start: u64, pages: u64) {
    if pages > FULL_FLUSH_PAGES || Cr4::read().contains(Cr4Flags::PCID) {
        return flush_local_all();
    }
    for page in 0..pages {
        tlb::flush(VirtAddr::new_truncate(start.wrapping_add(page * 4096)));
    }
}

/// The flush IPI's handler: the kernel calls this from its flush vector.
pub fn handler() {
    let published = PUBLISHED.load(SeqCst);
    let (start, pages) = (RANGE_START.load(SeqCst), RANGE_PAGES.load(SeqCst));
    let newest = GENERATION.load(SeqCst);
    if published == newest {
        flush_local(start, pages);
    } else {
        // A newer request began while the range was read: its range may
        // not be the one read, and everything covers both.
        flush_local_all();
    }
    // A CPU beyond the records acknowledges nothing: its requester times
    // out and says so rather than this handler faulting.
    if let Some(seen) = SEEN.get(crate::platform::cpu_index()) {
        seen.store(newest, SeqCst);
    }
}

/// Flush everything on every CPU in `targets` and wait until they have;
/// `Err` when some did not acknowledge in time.
pub fn flush_tlb(targets: CpuSet) -> Result<(), PvError> {
    flush_tlb_range(targets, 0, ALL)
}

/// Flush `pages` pages from `start` ([`ALL`]: everything) on every CPU
/// in `targets` and wait until they have; `Err` when some did not
/// acknowledge in time.
pub fn flush_tlb_range(targets: CpuSet, start: u64, pages: u64) -> Result<(), PvError> {
    if pages == 0 {
        return Ok(());
    }
    let generation = GENERATION.fetch_add(1, SeqCst) + 1;
    RANGE_START.store(start, SeqCst);
    RANGE_PAGES.store(pages, SeqCst);
    PUBLISHED.store(generation, SeqCst);
    let me = super::lapic::id();
    if me < 64 && targets.0 & (1 << me) != 0 {
        flush_local(start, pages);
    }
    let others = CpuSet(targets.0 & !(if me < 64 { 1 << me } else { 0 }));
    if others.0 == 0 {
        return Ok(());
    }
    let Some(p) = platform::get() else {
        return Err(PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native));
    };
    super::lapic::send_ipi(others, Vector(p.vectors().flush))?;
    let start = rdtsc();
    let deadline = tsc::tsc_at(pvi_sdk::types::Nanos(ACK_TIMEOUT_NS))
        .map(|t| t.saturating_sub(tsc::tsc_at(pvi_sdk::types::Nanos(0)).unwrap_or(0)));
    let mut spins = 0u64;
    for apic in (0..64).filter(|i| others.0 & (1 << i) != 0) {
        let Some(cpu) = p.cpu_of_apic(ApicId(apic)) else {
            continue;
        };
        let Some(seen) = SEEN.get(cpu) else {
            return Err(PvError::new(ErrorKind::Busy, ErrorOrigin::Native));
        };
        while seen.load(SeqCst) < generation {
            spins += 1;
            let late = match deadline {
                Some(d) => rdtsc().wrapping_sub(start) > d,
                None => spins > ACK_SPIN_LIMIT,
            };
            if late {
                return Err(PvError::new(ErrorKind::Busy, ErrorOrigin::Native));
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}
