//! TSC frequency from the sources a guest can query, and from a
//! calibration against a timer of known frequency.
//!
//! Every function here returns `None` rather than a frequency outside
//! [`MIN_HZ`](crate::time::tsc_freq::MIN_HZ)`..=`[`MAX_HZ`](crate::time::tsc_freq::MAX_HZ): a zeroed, reserved or hostile CPUID leaf must
//! not become a clock rate that later divides by zero or makes time race.

use crate::detect::Regs;
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

/// TSC frequency from CPUID, decoded by the raw-cpuid crate: leaf 0x15
/// (Time Stamp Counter and Nominal Core Crystal Clock, `crystal · ebx /
/// eax`), else leaf 0x16 (the processor base frequency, at which the TSC
/// runs where there is no crystal leaf), each only where the highest basic
/// leaf reaches it.
///
/// Many CPUs report a crystal frequency of 0; Linux then guesses the
/// crystal from the CPU model, which this deliberately does not: leaf 0x15
/// then gives nothing and leaf 0x16 is asked. Every result passes
/// [`plausible`], so a zeroed or hostile leaf gives `None` and the caller
/// calibrates instead. `cpuid(leaf, subleaf)` is the CPU's (or a test's).
pub fn from_cpuid(cpuid: impl Fn(u32, u32) -> Regs + Clone) -> Option<Hertz> {
    let reader = move |leaf: u32, subleaf: u32| {
        let r = cpuid(leaf, subleaf);
        raw_cpuid::CpuIdResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    };
    let cpu = raw_cpuid::CpuId::with_cpuid_reader(reader);
    let crystal = cpu
        .get_tsc_info()
        .and_then(|leaf| leaf.tsc_frequency())
        .and_then(plausible);
    crystal.or_else(|| {
        let base_mhz = cpu
            .get_processor_frequency_info()?
            .processor_base_frequency();
        plausible(u64::from(base_mhz) * 1_000_000)
    })
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

    /// A CPU whose highest basic leaf is `max`, with leaves 0x15 and 0x16
    /// as given and every other leaf zero.
    fn cpu(max: u32, leaf_15: [u32; 3], leaf_16: u32) -> impl Fn(u32, u32) -> Regs + Clone {
        move |leaf, _| {
            let (eax, ebx, ecx) = match leaf {
                0 => (max, 0x756e_6547, 0x6c65_746e), // "GenuineIntel"
                0x15 => (leaf_15[0], leaf_15[1], leaf_15[2]),
                0x16 => (leaf_16, 0, 0),
                _ => (0, 0, 0),
            };
            Regs {
                eax,
                ebx,
                ecx,
                edx: if leaf == 0 { 0x4965_6e69 } else { 0 },
            }
        }
    }

    #[test]
    fn leaf_15_real_examples() {
        let hz = |eax, ebx, ecx| from_cpuid(cpu(0x16, [eax, ebx, ecx], 0));
        // Kaby Lake-style: 24 MHz crystal, ratio 166/2.
        assert_eq!(hz(2, 166, 24_000_000), Some(Hertz(1_992_000_000)));
        // Denverton/Goldmont-style: 25 MHz crystal, ratio 88/2 = 2.2 GHz.
        assert_eq!(hz(2, 176, 25_000_000), Some(Hertz(2_200_000_000)));
        // Gemini Lake-style 19.2 MHz crystal, ratio 62/1.
        assert_eq!(hz(1, 62, 19_200_000), Some(Hertz(1_190_400_000)));
        // A quotient that is not whole rounds down: 25 MHz · 7 / 3.
        assert_eq!(hz(3, 7, 25_000_000), Some(Hertz(58_333_333)));
    }

    #[test]
    fn leaf_15_unknown_or_garbage_gives_nothing_without_leaf_16() {
        let hz = |eax, ebx, ecx| from_cpuid(cpu(0x16, [eax, ebx, ecx], 0));
        // Crystal not enumerated: no guessing.
        assert_eq!(hz(2, 166, 0), None);
        assert_eq!(hz(0, 166, 24_000_000), None);
        assert_eq!(hz(2, 0, 24_000_000), None);
        assert_eq!(hz(0, 0, 0), None);
        // (2^32 - 1)^2 Hz: absurd, and must not overflow on the way.
        assert_eq!(hz(1, u32::MAX, u32::MAX), None);
        // Tiny: 1 Hz crystal.
        assert_eq!(hz(1, 1, 1), None);
        // Ratio below 1 giving a sub-MHz result.
        assert_eq!(hz(1000, 1, 24_000_000), None);
    }

    #[test]
    fn leaf_16_serves_where_leaf_15_does_not() {
        let hz = |eax| from_cpuid(cpu(0x16, [2, 166, 0], eax));
        assert_eq!(hz(2_600), Some(Hertz(2_600_000_000)));
        assert_eq!(hz(1), Some(Hertz(1_000_000)));
        assert_eq!(hz(0), None);
        // 65.535 GHz is absurd.
        assert_eq!(hz(0xFFFF), None);
        assert_eq!(hz(20_000), Some(Hertz(20_000_000_000)));
        assert_eq!(hz(20_001), None);
        // raw-cpuid reads bits 15:0 only; all ones there is still absurd.
        assert_eq!(hz(u32::MAX), None);
    }

    #[test]
    fn leaves_beyond_the_highest_basic_leaf_are_not_read() {
        // Leaf 0x15 holds a good value, but the CPU says it stops at 0x14.
        assert_eq!(from_cpuid(cpu(0x14, [2, 166, 24_000_000], 2_600)), None);
        // It stops at 0x15: leaf 0x16 is not read.
        assert_eq!(from_cpuid(cpu(0x15, [2, 166, 0], 2_600)), None);
        assert_eq!(
            from_cpuid(cpu(0x15, [2, 166, 24_000_000], 0)),
            Some(Hertz(1_992_000_000))
        );
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
