//! TSC frequency from the sources a guest can query, and from a
//! calibration against a timer of known frequency.
//!
//! Every function here returns `None` rather than a frequency outside
//! [`MIN_HZ`](crate::time::tsc_freq::MIN_HZ)`..=`[`MAX_HZ`](crate::time::tsc_freq::MAX_HZ): a zeroed, reserved or hostile CPUID leaf must
//! not become a clock rate that later divides by zero or makes time race.

use crate::types::Hertz;

/// The slowest TSC accepted (1 MHz). No x86 CPU that has a TSC-based
/// paravirtual clock runs its TSC slower; below this a reading is garbage.
pub const MIN_HZ: u64 = 1_000_000;

/// The fastest TSC accepted (20 GHz): several times any shipped part, so a
/// real frequency is never refused, while 0xFFFF_FFFF-style garbage is.
pub const MAX_HZ: u64 = 20_000_000_000;

/// The 8254 PIT's input clock (1.193182 MHz), the usual calibration
/// reference on PC-compatible machines.
pub const PIT_HZ: u64 = 1_193_182;

/// The ACPI power-management timer's clock (3.579545 MHz), the other
/// common calibration reference.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// `hz` as a frequency if it lies within [`MIN_HZ`]`..=`[`MAX_HZ`].
///
/// The one gate every source in `time` passes through, so that all of
/// them agree on what counts as plausible.
pub const fn plausible(hz: u64) -> Option<Hertz> {
    if hz >= MIN_HZ && hz <= MAX_HZ {
        Some(Hertz(hz))
    } else {
        None
    }
}

/// TSC frequency from CPUID leaf 0x15 (Time Stamp Counter and Nominal Core
/// Crystal Clock): `ecx · ebx / eax`.
///
/// `eax` is the denominator and `ebx` the numerator of the TSC/crystal
/// ratio, `ecx` the crystal frequency in Hz. Many CPUs report `ecx = 0`;
/// Linux then guesses the crystal from the CPU model, which this function
/// deliberately does not: it returns `None` and the caller falls back to
/// leaf 0x16 or calibration. A zero ratio term also gives `None`.
pub fn from_cpuid_15(eax: u32, ebx: u32, ecx: u32) -> Option<Hertz> {
    if eax == 0 || ebx == 0 || ecx == 0 {
        return None;
    }
    // (2^32 - 1)^2 < 2^64: the product cannot overflow.
    let hz = u64::from(ecx) * u64::from(ebx) / u64::from(eax);
    plausible(hz)
}

/// Processor base frequency from CPUID leaf 0x16 (`eax` bits 15:0, in MHz).
///
/// On processors without an invariant-TSC crystal leaf, the TSC runs at the
/// base frequency. Bits 31:16 are reserved as zero: if any is set the leaf
/// is not what it claims to be and the result is `None`, as it is for 0.
pub fn from_cpuid_16(eax: u32) -> Option<Hertz> {
    if eax > 0xFFFF {
        return None;
    }
    plausible(u64::from(eax) * 1_000_000)
}

/// TSC frequency from the hypervisor timing leaf 0x40000010 (`eax` = TSC
/// kHz), offered by VMware and by KVM/QEMU with `vmware-cpuid-freq`.
///
/// Only the unit conversion is done here; checking that the hypervisor's
/// highest leaf reaches 0x40000010 is the caller's job. 0 (leaf absent or
/// unset) gives `None`.
pub fn from_timing_leaf(eax: u32) -> Option<Hertz> {
    plausible(u64::from(eax) * 1_000)
}

/// TSC frequency from VMware's backdoor GETHZ (command 45): Hz in
/// `ebx:eax` (high:low).
///
/// The caller passes `ebx = u32::MAX` in; if it is still `u32::MAX`
/// afterwards the command is unsupported (Linux `vmware_platform_setup`,
/// QEMU `vmport_cmd_get_hz`), and the result is `None`.
pub fn from_vmware_gethz(eax: u32, ebx: u32) -> Option<Hertz> {
    if ebx == u32::MAX {
        return None;
    }
    plausible(u64::from(ebx) << 32 | u64::from(eax))
}

/// TSC frequency measured against a reference timer: the TSC advanced by
/// `tsc_delta` while the reference, running at `reference_hz`, advanced by
/// `reference_ticks`.
///
/// `tsc_delta · reference_hz / reference_ticks`, rounded down, computed in
/// 128 bits so that no input overflows. Zero ticks or a zero reference
/// frequency give `None`, as does an implausible result (a window too
/// short to measure, or a wrapped counter).
pub fn from_calibration(tsc_delta: u64, reference_ticks: u64, reference_hz: u64) -> Option<Hertz> {
    if reference_ticks == 0 || reference_hz == 0 {
        return None;
    }
    let hz = u128::from(tsc_delta) * u128::from(reference_hz) / u128::from(reference_ticks);
    plausible(u64::try_from(hz).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausibility_bounds_are_inclusive() {
        assert_eq!(plausible(MIN_HZ), Some(Hertz(MIN_HZ)));
        assert_eq!(plausible(MAX_HZ), Some(Hertz(MAX_HZ)));
        assert_eq!(plausible(MIN_HZ - 1), None);
        assert_eq!(plausible(MAX_HZ + 1), None);
        assert_eq!(plausible(0), None);
        assert_eq!(plausible(u64::MAX), None);
    }

    #[test]
    fn cpuid_15_real_examples() {
        // Kaby Lake-style: 24 MHz crystal, ratio 166/2.
        assert_eq!(
            from_cpuid_15(2, 166, 24_000_000),
            Some(Hertz(1_992_000_000))
        );
        // Denverton/Goldmont-style: 25 MHz crystal, ratio 88/2 = 2.2 GHz.
        assert_eq!(
            from_cpuid_15(2, 176, 25_000_000),
            Some(Hertz(2_200_000_000))
        );
        // Gemini Lake-style 19.2 MHz crystal, ratio 62/1.
        assert_eq!(from_cpuid_15(1, 62, 19_200_000), Some(Hertz(1_190_400_000)));
        // A quotient that is not whole rounds down: 25 MHz · 7 / 3.
        assert_eq!(from_cpuid_15(3, 7, 25_000_000), Some(Hertz(58_333_333)));
    }

    #[test]
    fn cpuid_15_unknown_or_garbage() {
        // Crystal not enumerated: no guessing.
        assert_eq!(from_cpuid_15(2, 166, 0), None);
        assert_eq!(from_cpuid_15(0, 166, 24_000_000), None);
        assert_eq!(from_cpuid_15(2, 0, 24_000_000), None);
        assert_eq!(from_cpuid_15(0, 0, 0), None);
        // (2^32 - 1)^2 Hz: absurd, and must not overflow on the way.
        assert_eq!(from_cpuid_15(1, u32::MAX, u32::MAX), None);
        // Tiny: 1 Hz crystal.
        assert_eq!(from_cpuid_15(1, 1, 1), None);
        // Ratio below 1 giving a sub-MHz result.
        assert_eq!(from_cpuid_15(1000, 1, 24_000_000), None);
    }

    #[test]
    fn cpuid_16() {
        assert_eq!(from_cpuid_16(2_600), Some(Hertz(2_600_000_000)));
        assert_eq!(from_cpuid_16(1), Some(Hertz(1_000_000)));
        assert_eq!(from_cpuid_16(0), None);
        // 65.535 GHz is absurd.
        assert_eq!(from_cpuid_16(0xFFFF), None);
        assert_eq!(from_cpuid_16(20_000), Some(Hertz(20_000_000_000)));
        assert_eq!(from_cpuid_16(20_001), None);
        // Reserved high bits set.
        assert_eq!(from_cpuid_16(0x0001_0A28), None);
        assert_eq!(from_cpuid_16(u32::MAX), None);
    }

    #[test]
    fn timing_leaf() {
        assert_eq!(from_timing_leaf(2_893_202), Some(Hertz(2_893_202_000)));
        assert_eq!(from_timing_leaf(0), None);
        assert_eq!(from_timing_leaf(999), None);
        assert_eq!(from_timing_leaf(1_000), Some(Hertz(1_000_000)));
        // u32::MAX kHz = 4.29 THz.
        assert_eq!(from_timing_leaf(u32::MAX), None);
    }

    #[test]
    fn vmware_gethz() {
        let hz: u64 = 2_893_202_123;
        let (lo, hi) = (hz as u32, (hz >> 32) as u32);
        assert_eq!(from_vmware_gethz(lo, hi), Some(Hertz(hz)));
        // 12 GHz needs the high word.
        let hz: u64 = 12_000_000_000;
        assert_eq!(
            from_vmware_gethz(hz as u32, (hz >> 32) as u32),
            Some(Hertz(hz))
        );
        // Unsupported, whatever eax holds.
        assert_eq!(from_vmware_gethz(0, u32::MAX), None);
        assert_eq!(from_vmware_gethz(2_893_202_123, u32::MAX), None);
        // Zero, and absurdly high.
        assert_eq!(from_vmware_gethz(0, 0), None);
        assert_eq!(from_vmware_gethz(0, u32::MAX - 1), None);
    }

    #[test]
    fn calibration_arithmetic() {
        // 50 ms of PIT (59_659 ticks) during which a 3 GHz TSC ran.
        let ticks = 59_659;
        let tsc = 3_000_000_000u64 * ticks / PIT_HZ;
        let hz = from_calibration(tsc, ticks, PIT_HZ).unwrap().0;
        assert!(hz.abs_diff(3_000_000_000) < 100, "{hz}");
        // Exact case.
        assert_eq!(
            from_calibration(2_400_000_000, PM_TIMER_HZ, PM_TIMER_HZ),
            Some(Hertz(2_400_000_000))
        );
        // Large values that overflow 64-bit intermediate arithmetic.
        assert_eq!(
            from_calibration(u64::MAX / 2, u64::MAX / 2, 1_000_000_000),
            Some(Hertz(1_000_000_000))
        );
        // Result past u64 range.
        assert_eq!(from_calibration(u64::MAX, 1, u64::MAX), None);
        // Degenerate inputs.
        assert_eq!(from_calibration(1_000, 0, PIT_HZ), None);
        assert_eq!(from_calibration(1_000, 10, 0), None);
        assert_eq!(from_calibration(0, 10, PIT_HZ), None);
        // Window too short: 10 TSC ticks over 1 PIT tick = 11.9 MHz is
        // plausible; 0 TSC ticks over many is not.
        assert_eq!(from_calibration(10, 1, PIT_HZ), Some(Hertz(11_931_820)));
        assert_eq!(from_calibration(1, 1_000_000, PIT_HZ), None);
    }

    #[test]
    fn calibration_random_matches_reference() {
        let mut rng = fastrand::Rng::with_seed(0x075C_F2E0);
        for _ in 0..1000 {
            let delta = rng.u64(..);
            let ticks = rng.u64(1..);
            let ref_hz = rng.u64(1..);
            let exact = u128::from(delta) * u128::from(ref_hz) / u128::from(ticks);
            let want = u64::try_from(exact)
                .ok()
                .filter(|hz| (MIN_HZ..=MAX_HZ).contains(hz))
                .map(Hertz);
            assert_eq!(from_calibration(delta, ticks, ref_hz), want);
        }
    }
}
