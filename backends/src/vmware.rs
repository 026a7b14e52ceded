//! VMware: TSC frequency from the timing leaf or the backdoor's GETHZ, wall
//! time from GETTIMEFULL; the backdoor entered by `in`, or by vmcall or
//! vmmcall where the features leaf announces them.

use crate::registry::HypervisorBackend;
use crate::native::BareMetal;
use pvi_sdk::arch::cpuid;
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::vmware::{self, Features, Hypercalls, Instruction, Steps};
use pvi_sdk::time::{rtc, tsc_freq};
use pvi_sdk::types::{Hertz, Nanos, PvError};


/// The VMware backend.
#[derive(Clone, Copy, Debug)]
pub struct Vmware {
    features: Features,
    hypercalls: Hypercalls,
    choice: Choice,
    max_leaf: u32,
}

impl Vmware {
    /// How the backdoor is entered.
    pub fn instruction(&self) -> Instruction {
        self.hypercalls.instruction()
    }
}

// SAFETY: a `Vmware` is only made by `Vmware::new`, whose contract is that
// VMware is the hypervisor.
unsafe impl Steps for Vmware {
    type Native = BareMetal;

    fn features(&self) -> &Features {
        &self.features
    }

    /// Leaves beyond the highest one VMware reports read as zero ("not
    /// provided").
    fn cpuid(&self, leaf: u32) -> [u32; 4] {
        let at = self.choice.leaf(leaf);
        if at <= self.max_leaf {
            cpuid(at, 0).to_array()
        } else {
            [0; 4]
        }
    }

    fn tsc_hz_step2(&self) -> Result<Hertz, PvError> {
        // SAFETY: VMware is the hypervisor (the contract of `new`); GETHZ
        // writes no guest memory.
        let out = unsafe { self.hypercalls.bdoor_cmd_gethz(u32::MAX) };
        tsc_freq::from_vmware_gethz(out.tsc_hz_low, out.tsc_hz_high).ok_or_else(vmware::unsupported)
    }

    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        // SAFETY: as above; GETTIMEFULL writes no guest memory.
        let out = unsafe { self.hypercalls.bdoor_cmd_gettimefull() };
        rtc::from_vmware_gettimefull(
            out.magic,
            out.usecs,
            out.max_time_lag,
            out.secs_low,
            out.secs_high,
        )
        .ok_or_else(vmware::unsupported)
    }
}

// The hooks the registry (`crate::registry`) calls for every backend.
impl HypervisorBackend for Vmware {
    /// The backend for the VMware that detection found (by signature or by
    /// the backdoor probe).
    ///
    /// # Safety
    ///
    /// `choice` must be VMware's: the backdoor is entered in every op that
    /// maps to it.
    unsafe fn new(choice: &Choice) -> Vmware {
        let max_leaf = cpuid(choice.base, 0)
            .eax
            .clamp(choice.base, choice.base + 0xff);
        let in_range = |leaf: u32| choice.leaf(leaf) <= max_leaf;
        let features = if in_range(vmware::CPUID_VMWARE_FEATURES_LEAF) {
            Features::read(|leaf| {
                if in_range(leaf) {
                    cpuid(choice.leaf(leaf), 0).to_array()
                } else {
                    [0; 4]
                }
            })
        } else {
            Features::NONE
        };
        let vendor = pvi_sdk::detect::cpu_vendor(&mut pvi_sdk::arch::Hardware);
        let instruction = Instruction::choose(&features, &vendor);
        Vmware {
            features,
            hypercalls: Hypercalls::new(instruction),
            choice: *choice,
            max_leaf,
        }
    }
}

/// The VMware backend's ops.
pub type Ops = vmware::Paravirt<Vmware>;
