//! The local APIC on bare metal: end of interrupt, IPIs, the one-shot timer.
//! x2APIC through its MSRs when the CPU is in x2APIC mode, else xAPIC at
//! the address the kernel mapped ([`Platform::xapic`](crate::platform::Platform::xapic)).

use super::tsc;
use crate::platform;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pvi_sdk::arch::{cpuid, rdmsr, rdtsc, wrmsr};
use pvi_sdk::types::{ApicId, CpuSet, ErrorKind, ErrorOrigin, Nanos, PvError, Vector};

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const EOI: u32 = 0xb0;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LVT_TIMER: u32 = 0x320;
const INITIAL_COUNT: u32 = 0x380;
const CURRENT_COUNT: u32 = 0x390;
const DIVIDE: u32 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const TSC_DEADLINE_MODE: u32 = 0b10 << 17;
const DELIVERY_PENDING: u32 = 1 << 12;
/// Reads of the ICR before giving up on a delivery that never completes.
const DELIVERY_SPIN_LIMIT: u32 = 1_000_000;

fn unsupported() -> PvError {
    PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native)
}

#[derive(Clone, Copy)]
enum Mode {
    X2apic,
    Xapic(usize),
}

fn mode() -> Option<Mode> {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; native routines run
    // in ring 0.
    let base = unsafe { rdmsr(IA32_APIC_BASE) };
    if base & (1 << 10) != 0 {
        Some(Mode::X2apic)
    } else {
        platform::get().and_then(|p| p.xapic()).map(Mode::Xapic)
    }
}

fn write(mode: Mode, reg: u32, value: u32) {
    match mode {
        // SAFETY: x2APIC registers are MSRs 0x800 + offset/16, present in
        // x2APIC mode; ring 0.
        Mode::X2apic => unsafe { wrmsr(0x800 + (reg >> 4), u64::from(value)) },
        // SAFETY: the platform mapped the xAPIC page at `base`; registers are
        // 32-bit, 16-byte aligned, inside it.
        Mode::Xapic(base) => unsafe { ((base + reg as usize) as *mut u32).write_volatile(value) },
    }
}

fn read(mode: Mode, reg: u32) -> u32 {
    match mode {
        // SAFETY: as in `write`.
        Mode::X2apic => unsafe { rdmsr(0x800 + (reg >> 4)) as u32 },
        // SAFETY: as in `write`.
        Mode::Xapic(base) => unsafe { ((base + reg as usize) as *const u32).read_volatile() },
    }
}

/// Signal end of interrupt.
pub fn eoi() {
    if let Some(m) = mode() {
        write(m, EOI, 0);
    }
}

fn send(m: Mode, dest: u32, vector: u8) {
    match m {
        // SAFETY: the x2APIC ICR is one MSR: destination in the high half.
        Mode::X2apic => unsafe { wrmsr(0x830, u64::from(dest) << 32 | u64::from(vector)) },
        Mode::Xapic(_) => {
            write(m, ICR_HIGH, dest << 24);
            write(m, ICR_LOW, u32::from(vector));
            let mut spins = 0;
            while read(m, ICR_LOW) & DELIVERY_PENDING != 0 && spins < DELIVERY_SPIN_LIMIT {
                core::hint::spin_loop();
                spins += 1;
            }
        }
    }
}

/// Send `vector` to every CPU in `targets` (bit n: APIC id n).
pub fn send_ipi(targets: CpuSet, vector: Vector) -> Result<(), PvError> {
    if vector.0 < 32 {
        return Err(PvError::new(
            ErrorKind::InvalidArgument,
            ErrorOrigin::Native,
        ));
    }
    let m = mode().ok_or_else(unsupported)?;
    for dest in (0..64).filter(|i| targets.0 & (1 << i) != 0) {
        send(m, dest, vector.0);
    }
    Ok(())
}

/// Wake `target` with the kernel's kick vector.
pub fn kick(target: ApicId) {
    let vector = platform::get().map(|p| p.vectors().kick);
    if let (Some(m), Some(v)) = (mode(), vector) {
        send(m, target.0, v);
    }
}

fn has_tsc_deadline() -> bool {
    cpuid(1, 0).ecx & (1 << 24) != 0
}

/// APIC timer ticks per second at divide-by-16, measured once against the TSC.
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);

fn apic_timer_hz(m: Mode) -> Option<u64> {
    let known = APIC_TIMER_HZ.load(Relaxed);
    if known != 0 {
        return Some(known);
    }
    let tsc_hz = tsc::hz().0;
    if tsc_hz == 0 {
        return None;
    }
    write(m, DIVIDE, 0b0011);
    write(m, LVT_TIMER, LVT_MASKED);
    write(m, INITIAL_COUNT, u32::MAX);
    let start = rdtsc();
    let window = tsc_hz / 1000;
    while rdtsc().wrapping_sub(start) < window {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - read(m, CURRENT_COUNT);
    write(m, INITIAL_COUNT, 0);
    let hz = u64::from(elapsed) * 1000;
    (hz != 0).then(|| {
        APIC_TIMER_HZ.store(hz, Relaxed);
        hz
    })
}

/// Fire the timer vector once `clock_ns` reaches `deadline`.
pub fn timer_oneshot(deadline: Nanos) -> Result<(), PvError> {
    let m = mode().ok_or_else(unsupported)?;
    let vector = platform::get()
        .map(|p| p.vectors().timer)
        .ok_or_else(unsupported)?;
    // The deadline is in the active backend's clock (kvmclock under KVM,
    // the bare-metal TSC clock otherwise): convert a delay, not an instant.
    let delay = deadline
        .0
        .saturating_sub(crate::select::active_clock_ns().0);
    if has_tsc_deadline() {
        let tsc_hz = crate::select::active_tsc_hz().0;
        if tsc_hz == 0 {
            return Err(unsupported());
        }
        let ticks = (u128::from(delay) * u128::from(tsc_hz) / 1_000_000_000)
            .min(u128::from(u64::MAX / 2)) as u64;
        write(m, LVT_TIMER, TSC_DEADLINE_MODE | u32::from(vector));
        // SAFETY: CPUID says the TSC-deadline MSR exists; ring 0. A deadline
        // in the past fires at once; 0 would disarm, so use at least 1.
        unsafe { wrmsr(IA32_TSC_DEADLINE, rdtsc().wrapping_add(ticks).max(1)) };
        return Ok(());
    }
    let hz = apic_timer_hz(m).ok_or_else(unsupported)?;
    let count =
        (u128::from(delay) * u128::from(hz) / 1_000_000_000).clamp(1, u128::from(u32::MAX)) as u32;
    write(m, DIVIDE, 0b0011);
    write(m, LVT_TIMER, u32::from(vector));
    write(m, INITIAL_COUNT, count);
    Ok(())
}

/// Disarm the timer.
pub fn timer_cancel() {
    let Some(m) = mode() else { return };
    if has_tsc_deadline() && read(m, LVT_TIMER) & TSC_DEADLINE_MODE != 0 {
        // SAFETY: as in `timer_oneshot`; 0 disarms.
        unsafe { wrmsr(IA32_TSC_DEADLINE, 0) };
    } else {
        write(m, INITIAL_COUNT, 0);
    }
}
