//! The local APIC on bare metal: enabling it, end of interrupt, IPIs (INIT
//! and STARTUP included, for the kernel starting CPUs), the one-shot timer.
//! x2APIC through its MSRs when the CPU is in x2APIC mode, else xAPIC at
//! the address the kernel mapped ([`Platform::xapic`](crate::platform::Platform::xapic)).

use crate::platform;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use pvi_sdk::arch::{cpuid, rdmsr, rdtsc, wrmsr};
use pvi_sdk::time::deadline::ticks_until;
use pvi_sdk::types::{ApicId, CpuSet, ErrorKind, ErrorOrigin, Hertz, Nanos, PvError, Vector};

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const ID: u32 = 0x20;
const TPR: u32 = 0x80;
const EOI: u32 = 0xb0;
const SVR: u32 = 0xf0;
const SVR_APIC_ENABLE: u32 = 1 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
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

/// Which register interface the calling CPU's APIC uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// MSRs 0x800-0x8ff.
    X2apic,
    /// Memory-mapped registers at this (virtual) address.
    Xapic(usize),
}

/// Whether [`enable`] put the APIC in x2APIC mode ([`X2APIC`]) or left it
/// in xAPIC mode ([`XAPIC`]); [`UNKNOWN_MODE`] until it ran. Every CPU
/// enables the same mode, so the routines need not read IA32_APIC_BASE
/// (under a hypervisor, an exit) on every EOI, IPI and timer.
static ENABLED_MODE: AtomicU8 = AtomicU8::new(UNKNOWN_MODE);
const UNKNOWN_MODE: u8 = 0;
const X2APIC: u8 = 1;
const XAPIC: u8 = 2;

/// The calling CPU's APIC mode; `None` in xAPIC mode when the platform
/// maps no xAPIC page.
pub fn mode() -> Option<Mode> {
    let x2apic = match ENABLED_MODE.load(Relaxed) {
        X2APIC => true,
        XAPIC => false,
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; native
        // routines run in ring 0.
        _ => (unsafe { rdmsr(IA32_APIC_BASE) } & (1 << 10)) != 0,
    };
    if x2apic {
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

/// Enable the calling CPU's APIC (x2APIC mode when CPUID offers it) with
/// `spurious` as its spurious-interrupt vector and no priority threshold.
/// The kernel calls this on each CPU before the native routines use it.
pub fn enable(spurious: u8) -> Option<Mode> {
    let x2apic = cpuid(1, 0).ecx & (1 << 21) != 0;
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; setting the global
    // enable (bit 11), and x2APIC enable (bit 10) where CPUID says it
    // exists, keeps the base address.
    unsafe {
        let base = rdmsr(IA32_APIC_BASE);
        let value = base | 1 << 11 | if x2apic { 1 << 10 } else { 0 };
        if value != base {
            wrmsr(IA32_APIC_BASE, value);
        }
    }
    ENABLED_MODE.store(UNKNOWN_MODE, Relaxed);
    let m = mode()?;
    let chosen = match m {
        Mode::X2apic => X2APIC,
        Mode::Xapic(_) => XAPIC,
    };
    ENABLED_MODE.store(chosen, Relaxed);
    write(m, TPR, 0);
    write(m, SVR, SVR_APIC_ENABLE | u32::from(spurious));
    Some(m)
}

/// The calling CPU's APIC id (0 when the APIC is unreachable).
pub fn id() -> u32 {
    match mode() {
        Some(Mode::X2apic) => read(Mode::X2apic, ID),
        Some(m) => read(m, ID) >> 24,
        None => 0,
    }
}

/// Send INIT to `dest`: the first step of starting a CPU (`cpu_start`).
///
/// # Safety
///
/// `dest` runs nothing that INIT may cut short: it resets that CPU.
pub(crate) unsafe fn send_init(dest: u32) {
    if let Some(m) = mode() {
        send(m, dest, ICR_INIT | ICR_LEVEL_ASSERT);
    }
}

/// Send STARTUP to `dest`: it starts in real mode at `page << 12`.
///
/// # Safety
///
/// The page holds the code `dest` is to run, in real mode.
pub(crate) unsafe fn send_startup(dest: u32, page: u8) {
    if let Some(m) = mode() {
        send(m, dest, ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(page));
    }
}

/// Write the interrupt command register: `command` (vector, delivery mode)
/// to APIC id `dest`.
fn send(m: Mode, dest: u32, command: u32) {
    match m {
        // SAFETY: the x2APIC ICR is one MSR: destination in the high half.
        Mode::X2apic => unsafe { wrmsr(0x830, u64::from(dest) << 32 | u64::from(command)) },
        Mode::Xapic(_) => {
            write(m, ICR_HIGH, dest << 24);
            write(m, ICR_LOW, command);
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
    let m = mode().ok_or(PvError::UNSUPPORTED)?;
    for dest in (0..64).filter(|i| targets.0 & (1 << i) != 0) {
        send(m, dest, u32::from(vector.0));
    }
    Ok(())
}

/// Wake `target` with the kernel's kick vector.
pub fn kick(target: ApicId) {
    let vector = platform::get().map(|p| p.vectors().kick);
    if let (Some(m), Some(v)) = (mode(), vector) {
        send(m, target.0, u32::from(v));
    }
}

/// Whether the TSC-deadline timer exists: CPUID (an exit under a
/// hypervisor) asked once, the answer kept (1 no, 2 yes).
fn has_tsc_deadline() -> bool {
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Relaxed) {
        0 => {
            let has = cpuid(1, 0).ecx & (1 << 24) != 0;
            KNOWN.store(1 + u8::from(has), Relaxed);
            has
        }
        known => known == 2,
    }
}

/// APIC timer ticks per second at divide-by-16, and TSC ticks per second,
/// each measured once against the `clock_ns` of the op set that first arms
/// a timer: deadlines are given in that clock (a Xen PVH guest has no PIT,
/// and a hypervisor's reported TSC rate may differ from its clock by a
/// fraction of a percent: enough for a 20 ms timer measured against the
/// TSC to fire 100 us early). A rate is a property of the hardware, the
/// same against any clock that counts true nanoseconds, so one cache
/// serves every op set; the instant a deadline is counted from is read
/// from the serving op set's clock at every arm.
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Whether a timer rate (APIC timer or TSC) has been measured: the arm
/// that measures one spends 10 ms first, and fires that late.
pub fn calibrated() -> bool {
    APIC_TIMER_HZ.load(Relaxed) != 0 || TSC_HZ.load(Relaxed) != 0
}

/// How long a calibration counts, by `clock_ns`.
const CALIBRATION_NS: u64 = 10_000_000;
/// Clock reads before calibration gives up on a clock that does not move.
const CALIBRATION_READS: u32 = 1_000_000;

/// The rate of `counter` (ticks counted so far, rising) against `clock`
/// (nanoseconds), cached in `cache`; `None` if the clock does not move.
fn rate(cache: &AtomicU64, clock: &dyn Fn() -> u64, counter: &dyn Fn() -> u64) -> Option<u64> {
    let known = cache.load(Relaxed);
    if known != 0 {
        return Some(known);
    }
    let hz = measure(clock, counter)?;
    cache.store(hz, Relaxed);
    Some(hz)
}

/// Attempts at a tight clock/counter pair at each end of the window.
const PAIR_TRIES: u32 = 5;

/// One clock reading and the counter at the same instant: the counter is
/// read just before and just after the clock, and of [`PAIR_TRIES`] tries
/// the one whose two counter reads are closest is kept, with their
/// midpoint. A read that traps to the hypervisor (an APIC access: about a
/// millisecond in a Xen guest under nested TCG), or a host that stalls the
/// guest between two reads, widens that try's bracket, and it is not used.
fn pair(clock: &dyn Fn() -> u64, counter: &dyn Fn() -> u64) -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..PAIR_TRIES {
        let before = counter();
        let now = clock();
        let after = counter();
        let width = after.saturating_sub(before);
        if width < best.0 {
            best = (width, now, before + width / 2);
        }
    }
    (best.1, best.2)
}

/// The rate of `counter` (rising) against `clock` (nanoseconds) over
/// [`CALIBRATION_NS`]; `None` if the clock does not move or nothing was
/// counted. Unpaired, counting from the INITIAL_COUNT write to a read after
/// a 1 ms window added both APIC traps to the counter side only, and the
/// rate came out 1.5 to 2.3 times too high, so timers fired that much late.
fn measure(clock: &dyn Fn() -> u64, counter: &dyn Fn() -> u64) -> Option<u64> {
    let (start, first) = pair(clock, counter);
    let mut end = start;
    let mut reads = 0;
    while end.saturating_sub(start) < CALIBRATION_NS && reads < CALIBRATION_READS {
        core::hint::spin_loop();
        end = clock();
        reads += 1;
    }
    if end.saturating_sub(start) < CALIBRATION_NS {
        return None; // the clock did not move: no rate to give
    }
    let (end, last) = pair(clock, counter);
    let hz = rate_from(
        last.saturating_sub(first),
        end.saturating_sub(start),
        1_000_000_000,
    );
    (hz != 0).then_some(hz)
}

fn apic_timer_hz(m: Mode, clock: &dyn Fn() -> u64) -> Option<u64> {
    let known = APIC_TIMER_HZ.load(Relaxed);
    if known != 0 {
        return Some(known);
    }
    write(m, DIVIDE, 0b0011);
    write(m, LVT_TIMER, LVT_MASKED);
    write(m, INITIAL_COUNT, u32::MAX);
    let counted = || u64::from(u32::MAX - read(m, CURRENT_COUNT));
    let hz = measure(clock, &counted);
    write(m, INITIAL_COUNT, 0);
    if let Some(hz) = hz {
        APIC_TIMER_HZ.store(hz, Relaxed);
    }
    hz
}

/// Counter ticks per second, from `ticks` counted over `span` units of a
/// reference running at `per_second` units a second (0 when nothing was
/// measured).
fn rate_from(ticks: u64, span: u64, per_second: u64) -> u64 {
    if span == 0 {
        return 0;
    }
    (u128::from(ticks) * u128::from(per_second) / u128::from(span)) as u64
}

/// Fire the timer vector once `clock()` reaches `deadline`; `clock` is
/// the serving op set's `clock_ns` (kvmclock under KVM, the bare-metal
/// TSC clock with no hypervisor), the clock the deadline is in.
pub fn timer_oneshot(clock: &dyn Fn() -> Nanos, deadline: Nanos) -> Result<(), PvError> {
    let m = mode().ok_or(PvError::UNSUPPORTED)?;
    let vector = platform::get()
        .map(|p| p.vectors().timer)
        .ok_or(PvError::UNSUPPORTED)?;
    let clock_ns = || clock().0;
    // Convert a delay, not an instant. Everything that may trap to the
    // hypervisor (CPUID, the LVT write, a first calibration) comes first;
    // the clock is read last, just before the timer's own counter, or the
    // interrupt is late by however long those took (under nested
    // virtualization, milliseconds).
    if has_tsc_deadline() {
        let tsc_hz = rate(&TSC_HZ, &clock_ns, &rdtsc).ok_or(PvError::UNSUPPORTED)?;
        write(m, LVT_TIMER, TSC_DEADLINE_MODE | u32::from(vector));
        let now = clock();
        let start = rdtsc();
        let ticks = ticks_until(deadline, now, Hertz(tsc_hz));
        // SAFETY: CPUID says the TSC-deadline MSR exists; ring 0. A deadline
        // in the past fires at once; 0 would disarm, so use at least 1.
        unsafe { wrmsr(IA32_TSC_DEADLINE, start.wrapping_add(ticks).max(1)) };
        return Ok(());
    }
    let hz = apic_timer_hz(m, &clock_ns).ok_or(PvError::UNSUPPORTED)?;
    write(m, DIVIDE, 0b0011);
    write(m, LVT_TIMER, u32::from(vector));
    let now = clock();
    let count = ticks_until(deadline, now, Hertz(hz)).clamp(1, u64::from(u32::MAX)) as u32;
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

#[cfg(test)]
mod tests {
    use super::{measure, rate_from};
    use core::cell::Cell;

    #[test]
    fn the_rate_is_ticks_per_tsc_second() {
        // 62,500 ticks in 10 ms of clock_ns: 6.25 MHz.
        assert_eq!(rate_from(62_500, 10_000_000, 1_000_000_000), 6_250_000);
        assert_eq!(rate_from(5, 0, 1_000_000_000), 0);
    }

    /// A 1 GHz counter and a clock read off it; the host stalls the guest
    /// for 2 ms between a clock read and a counter read, once at each end
    /// of the window. Unpaired, the rate came out 20% off; paired with the
    /// tightest bracket, it is exact.
    #[test]
    fn a_stall_between_two_reads_does_not_skew_the_rate() {
        let ticks = Cell::new(0u64);
        let reads = Cell::new(0u32);
        let counter = || {
            let n = reads.get();
            reads.set(n + 1);
            // One counter read at each end of the window comes after a
            // stall (the second read of a try, at either end).
            if n == 1 || n == 13 {
                ticks.set(ticks.get() + 2_000_000);
            }
            ticks.set(ticks.get() + 10);
            ticks.get()
        };
        let clock = || {
            ticks.set(ticks.get() + 10);
            ticks.get()
        };
        let hz = measure(&clock, &counter).unwrap();
        assert!(hz.abs_diff(1_000_000_000) < 1_000_000, "{hz} Hz, not 1 GHz");
    }
}
