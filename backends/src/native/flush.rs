//! Remote TLB flush on bare metal: a flush IPI to each target, a local
//! flush, and a bounded wait for every target's acknowledgement.

use super::tsc;
use crate::percpu::MAX_CPUS;
use crate::platform;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use pvi_sdk::arch::rdtsc;
use pvi_sdk::types::{ApicId, CpuSet, ErrorKind, ErrorOrigin, PvError, Vector};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static SEEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// How long to wait for acknowledgements before giving up (a CPU that
/// never answers must not hang the caller).
const ACK_TIMEOUT_NS: u64 = 100_000_000;
const ACK_SPIN_LIMIT: u64 = 200_000_000;

/// Flush this CPU's non-global TLB entries (CR3 reloaded with its own
/// value).
fn flush_local() {
    x86_64::instructions::tlb::flush_all();
}

/// The flush IPI's handler: the kernel calls this from its flush vector.
pub fn handler() {
    flush_local();
    SEEN[crate::platform::cpu_index()].store(GENERATION.load(SeqCst), SeqCst);
}

/// Flush every CPU in `targets` and wait until they have; `Err` when some
/// did not acknowledge in time.
pub fn flush_tlb(targets: CpuSet) -> Result<(), PvError> {
    let generation = GENERATION.fetch_add(1, SeqCst) + 1;
    let me = super::lapic::id();
    if me < 64 && targets.0 & (1 << me) != 0 {
        flush_local();
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
        while SEEN[cpu.min(MAX_CPUS - 1)].load(SeqCst) < generation {
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
