//! Hostile hypervisor behaviour on demand (`--fault NAME`): what a broken
//! or malicious host might do, so a guest can show it falls back and says
//! why instead of hanging or crashing.

use crate::personality::Personality;

/// One kind of misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Every vcpu_time_info's version stays odd, as if an update never
    /// finished (xen).
    PvclockStuckOdd,
    /// The hypercall MSR is accepted but the page is left zeroed (xen,
    /// hyperv).
    HypercallPageEmpty,
    /// Every hypercall answers "not implemented" (xen, hyperv).
    HypercallsUnsupported,
    /// The hypervisor leaves hold garbage, the signature included (every
    /// personality but none).
    CpuidGarbage,
    /// Leaf 0x4000_0000 claims 0xffff_ffff as the highest leaf (every
    /// personality but none).
    AbsurdMaxLeaf,
    /// The reference TSC page's sequence is 0, "do not use" (hyperv).
    TscPageSequenceZero,
    /// Every backdoor command answers 0xffff_ffff (vmware).
    BackdoorFfffffff,
    /// The hypervisor timer is accepted when armed but never fires (xen's
    /// single-shot timer, hyperv's synthetic timer).
    TimerNeverFires,
    /// The version leaf says Xen 3.0, older than several mechanisms the
    /// IDL maps (xen): the guest must not try those.
    #[value(name = "xen-version-3.0")]
    XenVersion3_0,
    /// Not a fault but a role the real Xen 4.17 showed matters: the domain
    /// is the hardware domain (xen). XENVER_get_features sets XENFEAT_dom0,
    /// and SCHEDOP_shutdown(SHUTDOWN_poweroff) halts the machine ("Hardware
    /// Dom0 halted: halting machine"), which then stays on: powering off is
    /// the hardware domain's own ACPI S5 write.
    HardwareDomain,
    /// Not a fault but someone else's Hyper-V: Xen 4.17's viridian as seen
    /// from a PVH domU under QEMU TCG (hyperv). Access privileges without
    /// the frequency-MSRs feature bit, SynIC and synthetic timers without
    /// direct mode, the crash MSRs, recommendations for remote TLB flush,
    /// MSR-based APIC access and cluster IPIs, and a reference TSC page
    /// left invalid (sequence 0) because the host TSC is not invariant.
    Viridian,
    /// Not a fault but a platform the real Xen showed: a PVH domU has no
    /// PIT, CMOS RTC or VGA, and its FADT's IAPC_BOOT_ARCH says so (CMOS
    /// RTC not present, VGA not present). pvi-sim then creates no PIT and
    /// no RTC: their ports read as an empty bus (every personality with a
    /// hypervisor: without one, nothing would tell the guest its TSC's
    /// rate).
    NoLegacyDevices,
    /// Not a fault but the platform of VMMs such as cloud-hypervisor: ACPI
    /// hardware-reduced mode (the FADT's HW_REDUCED_ACPI flag, no PM1
    /// blocks), so powering off is a write of SLP_TYP and SLP_EN to the
    /// FADT's sleep control register (I/O port 0x3b0, as QEMU's reduced
    /// platform), and no isa-debug-exit device answers port 0xf4 (every
    /// personality).
    HardwareReducedAcpi,
}

impl Fault {
    /// The personalities it can be injected into.
    pub fn personalities(self) -> &'static [Personality] {
        use Personality::*;
        match self {
            Fault::PvclockStuckOdd => &[Xen],
            Fault::HypercallPageEmpty | Fault::HypercallsUnsupported => &[Xen, Hyperv],
            Fault::CpuidGarbage | Fault::AbsurdMaxLeaf => &[Kvm, Xen, Hyperv, Vmware],
            Fault::TscPageSequenceZero | Fault::Viridian => &[Hyperv],
            Fault::BackdoorFfffffff => &[Vmware],
            Fault::TimerNeverFires => &[Xen, Hyperv],
            Fault::XenVersion3_0 | Fault::HardwareDomain => &[Xen],
            Fault::NoLegacyDevices => &[Kvm, Xen, Hyperv, Vmware],
            Fault::HardwareReducedAcpi => &[None, Kvm, Xen, Hyperv, Vmware],
        }
    }

    /// `Err` with the reason when it does not apply to `personality`.
    pub fn check(self, personality: Personality) -> Result<(), String> {
        if self.personalities().contains(&personality) {
            Ok(())
        } else {
            Err(format!(
                "--fault {self:?} applies to {:?}, not to {personality:?}",
                self.personalities()
            ))
        }
    }
}

/// A deterministic stream of garbage (xorshift64), so a failing run can be
/// repeated exactly.
pub struct Garbage(u64);

impl Default for Garbage {
    fn default() -> Self {
        Garbage(0x9e37_79b9_7f4a_7c15)
    }
}

impl Iterator for Garbage {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        Some((x >> 16) as u32)
    }
}
