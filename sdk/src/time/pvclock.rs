//! The pvclock ABI that KVM (`MSR_KVM_SYSTEM_TIME_NEW`,
//! `MSR_KVM_WALL_CLOCK_NEW`) and Xen (`vcpu_time_info`, the shared-info
//! wall clock) share.
//!
//! System time in nanoseconds is `system_time + scale_delta(tsc -
//! tsc_timestamp, tsc_to_system_mul, tsc_shift)`, and the record is valid
//! only while its `version` is even and the same before and after the
//! fields are read: the hypervisor makes it odd, rewrites the fields, and
//! makes it even again (Linux arch/x86/include/asm/pvclock.h,
//! arch/x86/kernel/pvclock.c).
//!
//! The records live in memory the hypervisor writes at any time, so they
//! are read through raw pointers with volatile loads, never through
//! references, and every read is bounded: a version that never settles is
//! an error, not a hang.

use core::fmt;
use core::hint::spin_loop;
use core::ptr::addr_of;
use core::sync::atomic::{fence, Ordering};

use super::tsc_freq;
use crate::generated::kvm::{PVCLOCK_GUEST_STOPPED, PVCLOCK_TSC_STABLE_BIT};
use crate::types::{pvclock_vcpu_time_info, pvclock_wall_clock, Hertz, Nanos};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How many times a record is read before the read gives up.
///
/// A hypervisor keeps the version odd only for the few stores of an
/// update, so a read normally succeeds at once, or on the second attempt
/// if it raced one. A thousand failures in a row mean the hypervisor is
/// broken or hostile.
pub const MAX_RETRIES: u32 = 1000;

/// Why a pvclock record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadError {
    /// On each of [`MAX_RETRIES`] attempts the version was odd or changed
    /// during the read, so no consistent copy was seen.
    StuckUpdate {
        /// The version seen last.
        version: u32,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StuckUpdate { version } => write!(
                f,
                "pvclock record still being updated after {MAX_RETRIES} reads (version {version})"
            ),
        }
    }
}

impl core::error::Error for ReadError {}

/// A consistent copy of a vCPU time record, taken under the version
/// protocol, so that the arithmetic below works on values that belong
/// together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// The (even) version the fields were read under.
    pub version: u32,
    /// TSC value at the moment `system_time` was sampled.
    pub tsc_timestamp: u64,
    /// Nanoseconds since the hypervisor's epoch at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-nanosecond multiplier, a 32.32 fixed-point fraction.
    pub tsc_to_system_mul: u32,
    /// Power-of-two pre-shift of the TSC delta (may be negative).
    pub tsc_shift: i8,
    /// `PVCLOCK_TSC_STABLE_BIT`, `PVCLOCK_GUEST_STOPPED`, ...
    pub flags: u8,
}

impl Snapshot {
    /// Whether the hypervisor promises this clock is monotonic across
    /// vCPUs (meaningful only if it also advertised the stable-bit feature).
    pub const fn tsc_stable(&self) -> bool {
        self.flags & PVCLOCK_TSC_STABLE_BIT != 0
    }

    /// Whether the host paused this vCPU (watchdogs should not fire).
    pub const fn guest_stopped(&self) -> bool {
        self.flags & PVCLOCK_GUEST_STOPPED != 0
    }

    /// The TSC frequency the record's scale implies; see [`tsc_hz`].
    pub fn tsc_hz(&self) -> Option<Hertz> {
        tsc_hz(self.tsc_to_system_mul, self.tsc_shift)
    }
}

impl From<pvclock_vcpu_time_info> for Snapshot {
    /// The fields of a record already copied out (no consistency check).
    fn from(record: pvclock_vcpu_time_info) -> Self {
        Self {
            version: record.version,
            tsc_timestamp: record.tsc_timestamp,
            system_time: record.system_time,
            tsc_to_system_mul: record.tsc_to_system_mul,
            tsc_shift: record.tsc_shift,
            flags: record.flags,
        }
    }
}

/// A consistent copy of a pvclock wall-clock record: the Unix time at the
/// hypervisor's system-time epoch (system time 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WallClock {
    /// The (even) version the fields were read under.
    pub version: u32,
    /// Seconds since the Unix epoch.
    pub sec: u32,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

impl From<pvclock_wall_clock> for WallClock {
    /// The fields of a record already copied out (no consistency check).
    fn from(record: pvclock_wall_clock) -> Self {
        Self {
            version: record.version,
            sec: record.sec,
            nsec: record.nsec,
        }
    }
}

/// Scales a TSC delta to nanoseconds: shift `delta` left by `shift` (right
/// by `-shift` if negative), multiply by `mul` as a 32.32 fraction, and
/// keep bits 32..96 of the 128-bit product.
///
/// Bit for bit Linux's `pvclock_scale_delta`, including that a left shift
/// drops the bits it pushes out. A shift of 64 or more either way, which
/// would be undefined in C, gives 0 here: every bit of the delta has been
/// shifted out. Never panics.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let amount = u32::from(shift.unsigned_abs());
    let shifted = if shift < 0 {
        delta.checked_shr(amount)
    } else {
        delta.checked_shl(amount)
    }
    .unwrap_or(0);
    // At most (2^64 - 1)(2^32 - 1) >> 32 < 2^64: the cast loses nothing.
    ((u128::from(shifted) * u128::from(mul)) >> 32) as u64
}

/// System time in nanoseconds at TSC value `tsc`, from a snapshot.
///
/// TSC values are points on a 64-bit circle, and their difference is
/// signed: `tsc - tsc_timestamp` is taken with wraparound and read as an
/// `i64`. The real Xen 4.17 needs the wraparound: it starts an HVM/PVH
/// guest's TSC at 0 and stamps the first record from a host TSC read just
/// before that, so `tsc_timestamp` is "negative" (2^64 - 147,103,512 was
/// measured for a PVH dom0) while the guest's TSC reads a small positive
/// number; an unsigned comparison took every read for one before the
/// timestamp and froze the clock until Xen's next update, a second later.
///
/// A negative difference (TSCs not synchronised across CPUs, or a TSC
/// read that raced an update) counts as no time elapsed and gives
/// `system_time` itself; Linux scales the wrapped difference as unsigned
/// instead, which turns a reading a few cycles early into a jump of
/// centuries. The sum saturates at `u64::MAX` rather than wrapping.
pub fn system_time(snapshot: &Snapshot, tsc: u64) -> Nanos {
    let signed = tsc.wrapping_sub(snapshot.tsc_timestamp) as i64;
    let delta = u64::try_from(signed).unwrap_or(0);
    let elapsed = scale_delta(delta, snapshot.tsc_to_system_mul, snapshot.tsc_shift);
    Nanos(snapshot.system_time.saturating_add(elapsed))
}

/// The TSC frequency that `(mul, shift)` converts to nanoseconds:
/// `10^9 · 2^32 / mul`, halved `shift` times (doubled if negative).
///
/// The inverse of how KVM (`kvm_get_time_scale`) and Xen derive the scale
/// from the TSC rate; exact to within the rounding of `mul`, and rounded
/// down. `None` for `mul == 0`, for `|shift| >= 64` (the clock would not
/// advance), and for a result outside
/// [`tsc_freq::MIN_HZ`]`..=`[`tsc_freq::MAX_HZ`].
pub fn tsc_hz(mul: u32, shift: i8) -> Option<Hertz> {
    if mul == 0 || shift.unsigned_abs() >= 64 {
        return None;
    }
    // tsc_hz = 10^9 · 2^(32 - shift) / mul, exactly, in 128 bits:
    // 10^9 · 2^(32 + 63) < 2^125 and mul · 2^63 < 2^95.
    let amount = u32::from(shift.unsigned_abs());
    let ns_fraction = u128::from(NANOS_PER_SEC) << 32;
    let hz = if shift < 0 {
        (ns_fraction << amount) / u128::from(mul)
    } else {
        ns_fraction / (u128::from(mul) << amount)
    };
    tsc_freq::plausible(u64::try_from(hz).ok()?)
}

/// Unix time in nanoseconds: the wall clock at system time 0 plus the
/// current system time (as Linux `pvclock_read_wallclock` does).
///
/// `nsec` is added as it is even if a broken hypervisor put a second or
/// more in it; the sum saturates at `u64::MAX` (year 2554).
pub fn wall_time(wall: &WallClock, system_time: Nanos) -> Nanos {
    let epoch = u64::from(wall.sec)
        .saturating_mul(NANOS_PER_SEC)
        .saturating_add(u64::from(wall.nsec));
    Nanos(epoch.saturating_add(system_time.0))
}

/// One pass over a seqlocked record: the version before the fields were
/// read, what was read, and the version after.
struct Attempt<T> {
    before: u32,
    value: T,
    after: u32,
}

impl<T> Attempt<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        Attempt {
            before: self.before,
            value: f(self.value),
            after: self.after,
        }
    }
}

/// The version protocol's retry loop, apart from the memory it reads so
/// that it can be tested without a second thread: accept the first attempt
/// whose version was even and unchanged, give up after [`MAX_RETRIES`].
fn read_with<T>(mut attempt: impl FnMut() -> Attempt<T>) -> Result<T, ReadError> {
    let mut version = 0;
    for _ in 0..MAX_RETRIES {
        let Attempt {
            before,
            value,
            after,
        } = attempt();
        if before & 1 == 0 && before == after {
            return Ok(value);
        }
        version = after;
        spin_loop();
    }
    Err(ReadError::StuckUpdate { version })
}

/// A volatile 32-bit load.
///
/// # Safety
///
/// `p` must be valid for a 4-byte read and 4-byte aligned.
unsafe fn load_u32(p: *const u32) -> u32 {
    // SAFETY: forwarded from the caller.
    unsafe { p.read_volatile() }
}

/// A volatile load of a `u64` field as two 32-bit halves, so that a record
/// need only be 4-byte aligned (all KVM's MSR ABI promises). The version
/// protocol, not the width of the load, makes the halves belong together.
///
/// # Safety
///
/// `p` must be valid for an 8-byte read and 4-byte aligned.
unsafe fn load_u64(p: *const u64) -> u64 {
    let p = p.cast::<u32>();
    // SAFETY: both halves lie within the 8 bytes the caller vouches for,
    // and each is 4-byte aligned because `p` is.
    let (first, second) = unsafe { (p.read_volatile(), p.add(1).read_volatile()) };
    let (low, high) = if cfg!(target_endian = "little") {
        (first, second)
    } else {
        (second, first)
    };
    u64::from(high) << 32 | u64::from(low)
}

/// One attempt at a vCPU time record, calling `inside` (the TSC read)
/// between the field loads and the second version load.
///
/// # Safety
///
/// As for [`read`].
unsafe fn attempt_vcpu<R>(
    record: *const pvclock_vcpu_time_info,
    inside: impl FnOnce() -> R,
) -> Attempt<(Snapshot, R)> {
    // SAFETY: the caller guarantees `record` is valid for reads of the
    // whole record and 4-byte aligned; `version` is at offset 0.
    let before = unsafe { load_u32(addr_of!((*record).version)) };
    // Load the version before the fields (Linux: virt_rmb()).
    fence(Ordering::Acquire);
    // The u64s at offsets 8 and 16 and the u32 at 24 are 4-byte aligned,
    // the bytes at 28 and 29 need no alignment.

    // SAFETY: as above; field addresses are taken without references (the
    // struct is packed), each aligned for its load.
    let snapshot = unsafe {
        Snapshot {
            version: before,
            tsc_timestamp: load_u64(addr_of!((*record).tsc_timestamp)),
            system_time: load_u64(addr_of!((*record).system_time)),
            tsc_to_system_mul: load_u32(addr_of!((*record).tsc_to_system_mul)),
            tsc_shift: addr_of!((*record).tsc_shift).read_volatile(),
            flags: addr_of!((*record).flags).read_volatile(),
        }
    };
    let extra = inside();
    // Load the fields before the version again.
    fence(Ordering::Acquire);
    // SAFETY: as for the first version load.
    let after = unsafe { load_u32(addr_of!((*record).version)) };
    Attempt {
        before,
        value: (snapshot, extra),
        after,
    }
}

/// Reads a consistent [`Snapshot`] of a vCPU time record.
///
/// Follows the version protocol: load the version, load the fields, load
/// the version again, and start over if it was odd or changed, at most
/// [`MAX_RETRIES`] times.
///
/// For the current time prefer [`now`], which reads the TSC inside the
/// protected window: a snapshot used with a TSC read afterwards can be
/// stale if the hypervisor rescaled the clock in between (migration,
/// frequency change).
///
/// # Safety
///
/// `record` must point to a `pvclock_vcpu_time_info` that stays mapped and
/// readable for the whole call, and be 4-byte aligned (KVM requires this
/// of the address given to `MSR_KVM_SYSTEM_TIME_NEW`; Xen's records are
/// 8-byte aligned). The hypervisor may write it concurrently; nothing else
/// may hold a Rust reference to it.
///
/// # Errors
///
/// [`ReadError::StuckUpdate`] if no attempt saw an even, unchanged version.
pub unsafe fn read(record: *const pvclock_vcpu_time_info) -> Result<Snapshot, ReadError> {
    read_with(|| {
        // SAFETY: forwarded from the caller.
        unsafe { attempt_vcpu(record, || ()) }.map(|(snapshot, ())| snapshot)
    })
}

/// The current system time from a vCPU time record: [`read`] with the TSC
/// sampled inside the protected window, as Linux `__pvclock_read_cycles`
/// does, then [`system_time`].
///
/// `rdtsc` should be an ordered TSC read (`lfence; rdtsc` or `rdtscp`) so
/// that it cannot drift out of the window. It is called once per attempt.
///
/// # Safety
///
/// As for [`read`].
///
/// # Errors
///
/// [`ReadError::StuckUpdate`] if no attempt saw an even, unchanged version.
pub unsafe fn now(
    record: *const pvclock_vcpu_time_info,
    mut rdtsc: impl FnMut() -> u64,
) -> Result<Nanos, ReadError> {
    read_with(|| {
        // SAFETY: forwarded from the caller.
        unsafe { attempt_vcpu(record, &mut rdtsc) }
            .map(|(snapshot, tsc)| system_time(&snapshot, tsc))
    })
}

/// Reads a consistent [`WallClock`] under the same version protocol as
/// [`read`].
///
/// # Safety
///
/// `record` must point to a `pvclock_wall_clock` that stays mapped and
/// readable for the whole call, and be 4-byte aligned (KVM requires this
/// of the address given to `MSR_KVM_WALL_CLOCK_NEW`). The hypervisor may
/// write it concurrently; nothing else may hold a Rust reference to it.
///
/// # Errors
///
/// [`ReadError::StuckUpdate`] if no attempt saw an even, unchanged version.
pub unsafe fn read_wall_clock(record: *const pvclock_wall_clock) -> Result<WallClock, ReadError> {
    read_with(|| {
        // SAFETY: the caller guarantees `record` is valid for reads and
        // 4-byte aligned; every field is a u32 at a multiple of 4, and the
        // addresses are taken without references (the struct is packed).
        let before = unsafe { load_u32(addr_of!((*record).version)) };
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let (sec, nsec) = unsafe {
            (
                load_u32(addr_of!((*record).sec)),
                load_u32(addr_of!((*record).nsec)),
            )
        };
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let after = unsafe { load_u32(addr_of!((*record).version)) };
        Attempt {
            before,
            value: WallClock {
                version: before,
                sec,
                nsec,
            },
            after,
        }
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::Cell;
    use core::ptr::addr_of_mut;
    use std::boxed::Box;
    use std::vec::Vec;

    /// Independent model of Linux's arithmetic: C's `u64 <<` keeps the low
    /// 64 bits; shifts of 64 or more give 0 here by definition.
    fn reference_scale(delta: u64, mul: u32, shift: i8) -> u64 {
        let d = u128::from(delta);
        let s = i32::from(shift);
        let shifted = if !(-63..=63).contains(&s) {
            0
        } else if s < 0 {
            d >> (-s)
        } else {
            (d << s) % (1u128 << 64)
        };
        let product = shifted * u128::from(mul);
        u64::try_from(product / (1u128 << 32)).unwrap()
    }

    /// The instruction sequence of Linux's x86-64 `pvclock_scale_delta`
    /// (`mul` then `shrd $32`), run for real.
    #[cfg(target_arch = "x86_64")]
    fn linux_asm_scale(delta: u64, mul: u32, shift: i8) -> u64 {
        let shifted = if shift < 0 {
            delta >> -i32::from(shift)
        } else {
            delta << shift
        };
        let product: u64;
        // SAFETY: pure register arithmetic: no memory, stack or flags the
        // compiler relies on are touched beyond the declared operands.
        unsafe {
            core::arch::asm!(
                "mul {m}",
                "shrd rax, rdx, 32",
                m = in(reg) u64::from(mul),
                inout("rax") shifted => product,
                out("rdx") _,
                options(pure, nomem, nostack),
            );
        }
        product
    }

    #[test]
    fn scale_delta_matches_reference_on_random_samples() {
        let mut rng = fastrand::Rng::with_seed(0x009C_10C4);
        let mut samples = 0;
        for shift in -32i8..=32 {
            for _ in 0..20 {
                let (delta, mul) = (rng.u64(..), rng.u32(..));
                assert_eq!(
                    scale_delta(delta, mul, shift),
                    reference_scale(delta, mul, shift),
                    "delta {delta} mul {mul} shift {shift}"
                );
                samples += 1;
            }
        }
        for _ in 0..1000 {
            let (delta, mul, shift) = (rng.u64(..), rng.u32(..), rng.i8(..));
            assert_eq!(
                scale_delta(delta, mul, shift),
                reference_scale(delta, mul, shift),
                "delta {delta} mul {mul} shift {shift}"
            );
            samples += 1;
        }
        assert!(samples >= 1000);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn scale_delta_matches_linux_instructions() {
        let mut rng = fastrand::Rng::with_seed(0x0005_CA1E);
        for _ in 0..1000 {
            let (delta, mul, shift) = (rng.u64(..), rng.u32(..), rng.i8(-63..=63));
            assert_eq!(
                scale_delta(delta, mul, shift),
                linux_asm_scale(delta, mul, shift)
            );
        }
    }

    #[test]
    fn scale_delta_edges() {
        // mul is a fraction of 2^32: 2^31 halves.
        assert_eq!(scale_delta(1 << 32, 1 << 31, 0), 1 << 31);
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        // mul 0 stops the clock.
        assert_eq!(scale_delta(u64::MAX, 0, 0), 0);
        assert_eq!(scale_delta(u64::MAX, 0, 32), 0);
        // mul just under 1.
        assert_eq!(scale_delta(1000, u32::MAX, 0), 999);
        assert_eq!(
            scale_delta(u64::MAX, u32::MAX, 0),
            reference_scale(u64::MAX, u32::MAX, 0)
        );
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 0), 0xFFFF_FFFE_FFFF_FFFF);
        // Shift boundaries of the tested range.
        assert_eq!(scale_delta(u64::MAX, u32::MAX, -32), 0xFFFF_FFFE);
        assert_eq!(scale_delta(1 << 32, 1, -32), 0);
        assert_eq!(scale_delta(1, 1, 32), 1);
        assert_eq!(scale_delta(u64::MAX, 1 << 31, 32), 0x7FFF_FFFF_8000_0000);
        // Left shifts drop the high bits, as in C.
        assert_eq!(scale_delta(3 << 62, 1 << 31, 1), 1 << 62);
        assert_eq!(scale_delta(1, u32::MAX, 63), 0x7FFF_FFFF_8000_0000);
        assert_eq!(scale_delta(u64::MAX, u32::MAX, -63), 0);
        // |shift| >= 64: everything shifted out, no panic.
        for shift in [64, 65, 100, 127, -64, -65, -100, -128] {
            assert_eq!(scale_delta(u64::MAX, u32::MAX, shift), 0, "{shift}");
        }
        assert_eq!(scale_delta(0, u32::MAX, 127), 0);
    }

    fn snapshot(tsc_timestamp: u64, system_time: u64, mul: u32, shift: i8) -> Snapshot {
        Snapshot {
            version: 2,
            tsc_timestamp,
            system_time,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            flags: 0,
        }
    }

    #[test]
    fn system_time_adds_scaled_delta() {
        // 2 GHz TSC: mul 2^31 halves the delta.
        let s = snapshot(1_000, 5_000, 1 << 31, 0);
        assert_eq!(system_time(&s, 1_000), Nanos(5_000));
        assert_eq!(system_time(&s, 3_000), Nanos(6_000));
        assert_eq!(system_time(&s, 2_001), Nanos(5_500));
    }

    #[test]
    fn system_time_before_timestamp_clamps() {
        let s = snapshot(1_000_000, 5_000, 1 << 31, 0);
        assert_eq!(system_time(&s, 999_999), Nanos(5_000));
        assert_eq!(system_time(&s, 0), Nanos(5_000));
        // Linux would wrap to a delta near 2^64 here.
        assert_ne!(
            system_time(&s, 0).0,
            5_000 + scale_delta(0u64.wrapping_sub(1_000_000), 1 << 31, 0)
        );
    }

    #[test]
    fn system_time_wraps_past_zero_like_real_xen() {
        // Measured on Xen 4.17 (PVH dom0): the record was stamped before the
        // guest's TSC 0, and the guest's TSC then read 1,484,654,542.
        let s = snapshot(
            147_103_512u64.wrapping_neg(),
            844_600_176,
            3_512_646_479,
            -1,
        );
        assert_eq!(s.tsc_timestamp, 18_446_744_073_562_448_104);
        let delta = 1_484_654_542u64 + 147_103_512;
        assert_eq!(
            system_time(&s, 1_484_654_542),
            Nanos(844_600_176 + scale_delta(delta, 3_512_646_479, -1))
        );
        assert!(system_time(&s, 1_484_654_542) > system_time(&s, 1_000));
    }

    #[test]
    fn system_time_saturates() {
        let far = i64::MAX as u64;
        let s = snapshot(0, u64::MAX - 10, u32::MAX, 0);
        assert_eq!(system_time(&s, far), Nanos(u64::MAX));
        let s = snapshot(0, u64::MAX, u32::MAX, 31);
        assert_eq!(system_time(&s, far), Nanos(u64::MAX));
    }

    /// Linux's `kvm_get_time_scale(NSEC_PER_SEC, hz)` (arch/x86/kvm/x86.c),
    /// written from its description: shift the TSC rate into 32 bits and
    /// within a factor of two above 10^9, then `div_frac`.
    fn kvm_time_scale(base_hz: u64) -> (u32, i8) {
        const HIGH: u64 = 0xFFFF_FFFF_0000_0000;
        let mut scaled = NANOS_PER_SEC;
        let mut base = base_hz;
        let mut shift: i32 = 0;
        while base > scaled * 2 || base & HIGH != 0 {
            base >>= 1;
            shift -= 1;
        }
        let mut base32 = u32::try_from(base).unwrap();
        while u64::from(base32) <= scaled || scaled & HIGH != 0 {
            if scaled & HIGH != 0 || base32 & 0x8000_0000 != 0 {
                scaled >>= 1;
            } else {
                base32 <<= 1;
            }
            shift += 1;
        }
        let mul = u32::try_from((scaled << 32) / u64::from(base32)).unwrap();
        (mul, i8::try_from(shift).unwrap())
    }

    #[test]
    fn tsc_hz_round_trips_kvm_scale() {
        let mut rng = fastrand::Rng::with_seed(0xC10C_F4E0);
        let mut cases: Vec<u64> = (0..1000)
            .map(|_| rng.u64(10_000_000..=10_000_000_000))
            .collect();
        cases.extend([
            10_000_000,
            1_000_000_000,
            2_000_000_000,
            2_893_202_000,
            10_000_000_000,
        ]);
        for hz in cases {
            let (mul, shift) = kvm_time_scale(hz);
            let got = tsc_hz(mul, shift).unwrap().0;
            let error_ppm = got.abs_diff(hz) as f64 * 1e6 / hz as f64;
            assert!(
                error_ppm <= 1.0,
                "{hz} Hz: mul {mul} shift {shift} -> {got}"
            );
            // And the scale turns one second of ticks into one second.
            let one_second = scale_delta(hz, mul, shift);
            assert!(one_second.abs_diff(NANOS_PER_SEC) <= 1_000, "{one_second}");
        }
    }

    #[test]
    fn tsc_hz_known_and_rejected() {
        assert_eq!(tsc_hz(1 << 31, 0), Some(Hertz(2_000_000_000)));
        assert_eq!(tsc_hz(1 << 31, 1), Some(Hertz(1_000_000_000)));
        assert_eq!(tsc_hz(1 << 31, -1), Some(Hertz(4_000_000_000)));
        assert_eq!(tsc_hz(0, 0), None);
        assert_eq!(tsc_hz(0, -5), None);
        // Shifts that stop the clock.
        assert_eq!(tsc_hz(1 << 31, 64), None);
        assert_eq!(tsc_hz(1 << 31, -64), None);
        assert_eq!(tsc_hz(u32::MAX, i8::MIN), None);
        assert_eq!(tsc_hz(1, i8::MAX), None);
        // Implausible: 1 ns per 2^32 ticks, and 2^63 GHz.
        assert_eq!(tsc_hz(1, 63), None);
        assert_eq!(tsc_hz(1, -63), None);
        assert_eq!(tsc_hz(u32::MAX, 40), None);
        // Exhaustive over shifts with extreme multipliers: no panic.
        for shift in i8::MIN..=i8::MAX {
            for mul in [0, 1, 2, 1 << 31, u32::MAX] {
                let _ = tsc_hz(mul, shift);
            }
        }
        let s = snapshot(0, 0, 1 << 31, 0);
        assert_eq!(s.tsc_hz(), Some(Hertz(2_000_000_000)));
    }

    #[test]
    fn wall_time_arithmetic() {
        let wall = WallClock {
            version: 2,
            sec: 1_700_000_000,
            nsec: 123_456_789,
        };
        assert_eq!(wall_time(&wall, Nanos(0)), Nanos(1_700_000_000_123_456_789));
        assert_eq!(
            wall_time(&wall, Nanos(1_000_000_001)),
            Nanos(1_700_000_001_123_456_790)
        );
        // Largest record, largest system time: saturates, no panic.
        let max = WallClock {
            version: 0,
            sec: u32::MAX,
            nsec: u32::MAX,
        };
        assert_eq!(
            wall_time(&max, Nanos(0)),
            Nanos(u64::from(u32::MAX) * NANOS_PER_SEC + u64::from(u32::MAX))
        );
        assert_eq!(wall_time(&max, Nanos(u64::MAX)), Nanos(u64::MAX));
        assert_eq!(wall_time(&WallClock::default(), Nanos(42)), Nanos(42));
    }

    #[test]
    fn snapshot_flags_and_conversion() {
        let record = pvclock_vcpu_time_info {
            version: 4,
            tsc_timestamp: 1,
            system_time: 2,
            tsc_to_system_mul: 3,
            tsc_shift: -4,
            flags: PVCLOCK_TSC_STABLE_BIT | PVCLOCK_GUEST_STOPPED,
            ..pvclock_vcpu_time_info::ZERO
        };
        let s = Snapshot::from(record);
        assert_eq!(s, snapshot_with(4, 1, 2, 3, -4, 3));
        assert!(s.tsc_stable() && s.guest_stopped());
        assert!(!Snapshot::default().tsc_stable());
        assert!(!Snapshot::default().guest_stopped());
        let w = WallClock::from(pvclock_wall_clock {
            version: 6,
            sec: 7,
            nsec: 8,
        });
        assert_eq!((w.version, w.sec, w.nsec), (6, 7, 8));
    }

    fn snapshot_with(
        version: u32,
        tsc_timestamp: u64,
        system_time: u64,
        mul: u32,
        shift: i8,
        flags: u8,
    ) -> Snapshot {
        Snapshot {
            version,
            tsc_timestamp,
            system_time,
            tsc_to_system_mul: mul,
            tsc_shift: shift,
            flags,
        }
    }

    // ---- the retry loop, driven by a closure ----

    fn attempt(before: u32, value: u32, after: u32) -> Attempt<u32> {
        Attempt {
            before,
            value,
            after,
        }
    }

    #[test]
    fn read_with_accepts_even_unchanged_version_at_once() {
        let calls = Cell::new(0);
        let got = read_with(|| {
            calls.set(calls.get() + 1);
            attempt(8, 42, 8)
        });
        assert_eq!(got, Ok(42));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn read_with_stuck_odd_gives_up_after_exactly_max_retries() {
        let calls = Cell::new(0u32);
        let got = read_with(|| {
            calls.set(calls.get() + 1);
            attempt(7, 0, 7)
        });
        assert_eq!(got, Err(ReadError::StuckUpdate { version: 7 }));
        assert_eq!(calls.get(), MAX_RETRIES);
    }

    #[test]
    fn read_with_changing_version_gives_up_after_exactly_max_retries() {
        let calls = Cell::new(0u32);
        let got = read_with(|| {
            let n = calls.get();
            calls.set(n + 1);
            // Even both times, but a full update happened in between.
            attempt(2 * n, 0, 2 * n + 2)
        });
        assert_eq!(
            got,
            Err(ReadError::StuckUpdate {
                version: 2 * MAX_RETRIES
            })
        );
        assert_eq!(calls.get(), MAX_RETRIES);
    }

    #[test]
    fn read_with_retries_until_consistent() {
        // Odd first, then changed, then consistent.
        let script = [attempt(3, 1, 3), attempt(4, 2, 6), attempt(6, 3, 6)];
        let calls = Cell::new(0usize);
        let got = read_with(|| {
            let n = calls.get();
            calls.set(n + 1);
            let a = &script[n];
            attempt(a.before, a.value, a.after)
        });
        assert_eq!(got, Ok(3));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn read_with_succeeds_on_the_last_allowed_attempt() {
        let calls = Cell::new(0u32);
        let got = read_with(|| {
            let n = calls.get() + 1;
            calls.set(n);
            if n == MAX_RETRIES {
                attempt(10, 99, 10)
            } else {
                attempt(9, 0, 9)
            }
        });
        assert_eq!(got, Ok(99));
        assert_eq!(calls.get(), MAX_RETRIES);
    }

    #[test]
    fn read_with_rejects_odd_even_if_unchanged_and_even_if_after_is_even() {
        // Odd before, even after: the update finished mid-read.
        let calls = Cell::new(0u32);
        let got = read_with(|| {
            calls.set(calls.get() + 1);
            attempt(5, 0, 6)
        });
        assert_eq!(got, Err(ReadError::StuckUpdate { version: 6 }));
        assert_eq!(calls.get(), MAX_RETRIES);
    }

    // ---- the real readers, over records in memory ----

    /// One record 8-byte aligned and one only 4-byte aligned (the weakest
    /// alignment KVM allows), in one allocation.
    #[repr(C, align(8))]
    struct Holder {
        aligned: pvclock_vcpu_time_info,
        _pad: u32,
        offset4: pvclock_vcpu_time_info,
    }

    /// Boxes `record`, runs `f` on a raw pointer to an 8-byte aligned copy
    /// (or a 4-byte but not 8-byte aligned one if `offset4`), and frees it.
    fn with_record<T>(
        record: pvclock_vcpu_time_info,
        offset4: bool,
        f: impl FnOnce(*mut pvclock_vcpu_time_info) -> T,
    ) -> T {
        let holder = Box::into_raw(Box::new(Holder {
            aligned: record,
            _pad: 0,
            offset4: record,
        }));
        // SAFETY: `holder` is a live allocation from Box::into_raw.
        let p = unsafe {
            if offset4 {
                addr_of_mut!((*holder).offset4)
            } else {
                addr_of_mut!((*holder).aligned)
            }
        };
        assert_eq!(p as usize % 8, if offset4 { 4 } else { 0 });
        let out = f(p);
        // SAFETY: from Box::into_raw above, freed once.
        drop(unsafe { Box::from_raw(holder) });
        out
    }

    fn sample_record(version: u32) -> pvclock_vcpu_time_info {
        pvclock_vcpu_time_info {
            version,
            pad0: 0xDEAD_BEEF,
            tsc_timestamp: 0x0123_4567_89AB_CDEF,
            system_time: 0xFEDC_BA98_7654_3210,
            tsc_to_system_mul: 0x8000_0001,
            tsc_shift: -2,
            flags: PVCLOCK_TSC_STABLE_BIT,
            pad: [0xAA, 0xBB],
        }
    }

    #[test]
    fn read_stable_record_gives_snapshot() {
        for offset4 in [false, true] {
            let got = with_record(sample_record(10), offset4, |p| {
                // SAFETY: `p` is live, aligned, and only read here.
                unsafe { read(p) }
            });
            assert_eq!(
                got,
                Ok(snapshot_with(
                    10,
                    0x0123_4567_89AB_CDEF,
                    0xFEDC_BA98_7654_3210,
                    0x8000_0001,
                    -2,
                    PVCLOCK_TSC_STABLE_BIT
                )),
                "offset4 {offset4}"
            );
        }
    }

    #[test]
    fn read_stuck_odd_record_fails() {
        for offset4 in [false, true] {
            let got = with_record(sample_record(11), offset4, |p| {
                // SAFETY: `p` is live, aligned, and only read here.
                unsafe { read(p) }
            });
            assert_eq!(got, Err(ReadError::StuckUpdate { version: 11 }));
        }
    }

    #[test]
    fn now_samples_tsc_inside_the_window() {
        let record = pvclock_vcpu_time_info {
            version: 2,
            tsc_timestamp: 1_000,
            system_time: 1_000_000,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
            ..pvclock_vcpu_time_info::ZERO
        };
        let got = with_record(record, true, |p| {
            let calls = Cell::new(0u32);
            // SAFETY: `p` is live and aligned; the closure writes the
            // record only through `p`, as a hypervisor would.
            let t = unsafe {
                now(p, || {
                    calls.set(calls.get() + 1);
                    3_000
                })
            };
            (t, calls.get())
        });
        assert_eq!(got, (Ok(Nanos(1_001_000)), 1));
    }

    #[test]
    fn now_retries_when_an_update_lands_mid_read() {
        let record = pvclock_vcpu_time_info {
            version: 2,
            tsc_timestamp: 1_000,
            system_time: 1_000_000,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
            ..pvclock_vcpu_time_info::ZERO
        };
        let got = with_record(record, false, |p| {
            let calls = Cell::new(0u32);
            // SAFETY: `p` is live and aligned; the closure writes the
            // record only through `p` (by value, no references to the
            // packed fields), as a hypervisor would between our loads.
            let t = unsafe {
                now(p, || {
                    let n = calls.get();
                    calls.set(n + 1);
                    if n == 0 {
                        // A whole update: new epoch and rate, version +2.
                        (*p).version = 3;
                        (*p).tsc_timestamp = 2_000;
                        (*p).system_time = 5_000_000;
                        (*p).tsc_to_system_mul = 1 << 30;
                        (*p).version = 4;
                    }
                    6_000
                })
            };
            (t, calls.get())
        });
        // The first attempt's mix of old fields is discarded; the second
        // uses the new ones: 5_000_000 + (6_000 - 2_000) / 4.
        assert_eq!(got, (Ok(Nanos(5_001_000)), 2));
    }

    #[test]
    fn now_gives_up_on_a_version_that_keeps_changing() {
        let got = with_record(sample_record(2), true, |p| {
            let calls = Cell::new(0u32);
            // SAFETY: as in the test above.
            let t = unsafe {
                now(p, || {
                    calls.set(calls.get() + 1);
                    (*p).version = (*p).version.wrapping_add(2);
                    0
                })
            };
            (t, calls.get())
        });
        assert_eq!(
            got,
            (
                Err(ReadError::StuckUpdate {
                    version: 2 + 2 * MAX_RETRIES
                }),
                MAX_RETRIES
            )
        );
    }

    #[test]
    fn wall_clock_read() {
        #[repr(C, align(4))]
        struct Aligned4(pvclock_wall_clock);
        let stable = Box::into_raw(Box::new(Aligned4(pvclock_wall_clock {
            version: 4,
            sec: 1_700_000_000,
            nsec: 999_999_999,
        })));
        // SAFETY: `stable` is live, 4-byte aligned, only read.
        let got = unsafe { read_wall_clock(addr_of!((*stable).0)) };
        assert_eq!(
            got,
            Ok(WallClock {
                version: 4,
                sec: 1_700_000_000,
                nsec: 999_999_999
            })
        );
        // SAFETY: `stable` is live; writing a packed field by value.
        unsafe { (*stable).0.version = 5 };
        // SAFETY: as above.
        let got = unsafe { read_wall_clock(addr_of!((*stable).0)) };
        assert_eq!(got, Err(ReadError::StuckUpdate { version: 5 }));
        // SAFETY: from Box::into_raw above, freed once.
        drop(unsafe { Box::from_raw(stable) });
    }

    #[test]
    fn error_displays() {
        let text = std::format!("{}", ReadError::StuckUpdate { version: 9 });
        assert!(text.contains("version 9"), "{text}");
    }
}
