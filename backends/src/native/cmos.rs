//! The CMOS real-time clock: wall time on bare metal.

use crate::platform;
use pvi_sdk::arch::{inb, outb};
use pvi_sdk::time::rtc::{decode, unix_nanos, RtcRegisters};
use pvi_sdk::types::Nanos;

const UPDATE_IN_PROGRESS: u8 = 0x80;
/// Reads before giving up on a clock that is always updating.
const SPIN_LIMIT: u32 = 1_000_000;

fn register(index: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the CMOS index and data registers; reading
    // the clock's registers has no side effect.
    unsafe {
        outb(0x70, index);
        inb(0x71)
    }
}

fn snapshot(century: Option<u8>) -> RtcRegisters {
    RtcRegisters {
        seconds: register(0x00),
        minutes: register(0x02),
        hours: register(0x04),
        day: register(0x07),
        month: register(0x08),
        year: register(0x09),
        century: century.map(register),
        status_b: register(0x0b),
    }
}

/// Whether anything answers the CMOS ports. Where nothing does (a Xen
/// PVH domU has no emulated RTC), a port read gives 0xff, and neither the
/// seconds register nor status register A can read 0xff on a real RTC
/// (seconds stop at 59; status A's rate and divider bits are never all
/// set). Two reads: cheap, and it keeps `wallclock` from polling a
/// device that is not there.
pub fn present() -> bool {
    !(register(0x00) == 0xff && register(0x0a) == 0xff)
}

/// Nanoseconds since the Unix epoch, or `Nanos(0)` if there is no clock
/// ([`present`]), it cannot be read consistently or it holds an
/// impossible date.
pub fn wallclock() -> Nanos {
    if !present() {
        return Nanos(0);
    }
    let century = platform::get().and_then(|p| p.acpi().century);
    for _ in 0..5 {
        let mut spins = 0;
        while register(0x0a) & UPDATE_IN_PROGRESS != 0 && spins < SPIN_LIMIT {
            spins += 1;
        }
        let a = snapshot(century);
        let b = snapshot(century);
        if a == b {
            return decode(&a).and_then(|t| unix_nanos(&t)).unwrap_or(Nanos(0));
        }
    }
    Nanos(0)
}
