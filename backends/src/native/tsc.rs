//! Bare-metal time: the TSC, its frequency from CPUID or measured against
//! the PIT, and the monotonic clock derived from them.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pvi_sdk::arch::{cpuid, inb, outb, rdtsc};
use pvi_sdk::time::tsc_freq;
use pvi_sdk::types::{Hertz, Nanos};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

/// PIT ticks in one calibration window: about 10 ms.
const PIT_WINDOW: u16 = 11_932;
/// Port reads before giving up on a PIT that never counts down (a broken
/// or absent PIT must not hang the boot).
const PIT_SPIN_LIMIT: u64 = 50_000_000;

/// [`TSC_HZ`] once discovery has found nothing: CPUID's leaves do not
/// change, and a PIT that is absent stays absent.
const NOT_FOUND: u64 = u64::MAX;

/// The TSC frequency: CPUID 0x15, then 0x16, then a measurement against
/// the PIT. Remembered after the first call, and so is finding nothing
/// (`Hertz(0)`): asking again would cost two CPUIDs and about thirty port
/// accesses on every native clock read, each an exit, and a native clock
/// polled on a machine without a PIT (a Xen PVH domU) would take hours.
pub fn hz() -> Hertz {
    Hertz(remembered(&TSC_HZ, || {
        let hz = discover().map_or(0, |h| h.0);
        if hz != 0 {
            let _ = BOOT_TSC.compare_exchange(0, rdtsc(), Relaxed, Relaxed);
        }
        hz
    }))
}

/// What `find` returns the first time (0 for nothing), from `cache` after.
fn remembered(cache: &AtomicU64, find: impl FnOnce() -> u64) -> u64 {
    match cache.load(Relaxed) {
        0 => {
            let found = find();
            cache.store(if found == 0 { NOT_FOUND } else { found }, Relaxed);
            found
        }
        NOT_FOUND => 0,
        known => known,
    }
}

/// Find the TSC frequency afresh, as [`hz`] does the first time: CPUID
/// 0x15, then 0x16, then about 10 ms against the PIT.
pub fn discover() -> Option<Hertz> {
    let from_cpuid = tsc_freq::from_cpuid(cpuid);
    from_cpuid.or_else(calibrate_against_pit)
}

/// Windows timed against the PIT; the median counts. A window can be
/// stretched (the vCPU descheduled as the count runs out, an SMI) and,
/// under a hypervisor, shortened too: the count starts at the load, and a
/// vCPU descheduled between the load and the first TSC read misses the
/// start. Taking the shortest, as this once did, picked exactly that
/// window (a pvi-sim CI run: a native clock 1.5% fast).
const PIT_WINDOWS: usize = 5;

/// Count TSC ticks while the PIT's channel 2 counts down a known number of
/// its 1.193182 MHz ticks, [`PIT_WINDOWS`] times; the median counts.
fn calibrate_against_pit() -> Option<Hertz> {
    let mut windows = [0u64; PIT_WINDOWS];
    let mut timed = 0;
    for _ in 0..PIT_WINDOWS {
        if let Some(ticks) = pit_window() {
            windows[timed] = ticks;
            timed += 1;
        }
    }
    if timed == 0 {
        return None;
    }
    let ticks = median(&mut windows[..timed]);
    tsc_freq::from_calibration(ticks, u64::from(PIT_WINDOW), tsc_freq::PIT_HZ)
}

/// The middle value of `values` (sorted in place).
fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// TSC ticks in one PIT window, or `None` if there is no PIT or it never
/// counted down. In mode 0 the channel's output goes low as the count is
/// loaded; an output already high then is a port nothing answers (it reads
/// 0xff: a Xen PVH guest has no PIT), whose "window" would time nothing
/// and give an absurdly low frequency.
fn pit_window() -> Option<u64> {
    // SAFETY: ports 0x61, 0x43 and 0x42 are the PC speaker gate and PIT
    // channel 2, which nothing else in a kernel being booted uses; the
    // speaker stays off (bit 1 clear).
    unsafe {
        let gate = inb(0x61);
        outb(0x61, (gate & !0x02) | 0x01);
        outb(0x43, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        outb(0x42, (PIT_WINDOW & 0xff) as u8);
        outb(0x42, (PIT_WINDOW >> 8) as u8);
        if inb(0x61) & 0x20 != 0 {
            outb(0x61, gate);
            return None;
        }
        let start = rdtsc();
        let mut spins = 0u64;
        while inb(0x61) & 0x20 == 0 {
            spins += 1;
            if spins > PIT_SPIN_LIMIT {
                outb(0x61, gate);
                return None;
            }
        }
        let end = rdtsc();
        outb(0x61, gate);
        Some(end.wrapping_sub(start))
    }
}

/// Nanoseconds since the TSC frequency was first found.
pub fn clock_ns() -> Nanos {
    let hz = hz().0;
    if hz == 0 {
        return Nanos(0);
    }
    let ticks = rdtsc().wrapping_sub(BOOT_TSC.load(Relaxed));
    Nanos((u128::from(ticks) * 1_000_000_000 / u128::from(hz)).min(u128::from(u64::MAX)) as u64)
}

/// The TSC value at which [`clock_ns`] reads `at`, if the frequency is known.
pub fn tsc_at(at: Nanos) -> Option<u64> {
    let hz = hz().0;
    (hz != 0).then(|| {
        let ticks =
            (u128::from(at.0) * u128::from(hz) / 1_000_000_000).min(u128::from(u64::MAX)) as u64;
        BOOT_TSC.load(Relaxed).wrapping_add(ticks)
    })
}

#[cfg(test)]
mod tests {
    use super::{median, remembered};
    use core::sync::atomic::AtomicU64;

    #[test]
    fn a_frequency_or_its_absence_is_found_once() {
        let cache = AtomicU64::new(0);
        assert_eq!(remembered(&cache, || 2_000_000_000), 2_000_000_000);
        assert_eq!(remembered(&cache, || panic!("asked twice")), 2_000_000_000);
        let none = AtomicU64::new(0);
        assert_eq!(remembered(&none, || 0), 0);
        assert_eq!(remembered(&none, || panic!("asked again after nothing")), 0);
    }

    #[test]
    fn one_shortened_and_one_stretched_window_do_not_move_the_median() {
        let mut windows = [2_000_000, 1_970_000, 2_000_100, 2_400_000, 1_999_900];
        assert_eq!(median(&mut windows), 2_000_000);
    }
}
