//! Which hypervisor the guest sees: its CPUID leaves, and (in the
//! personalities that have them) its MSRs, hypercalls and ports.

pub mod hyperv;
mod kvm;
pub mod vmware;
pub mod xen;

/// The port the hypercall pages pvi-sim fills write to (`out imm8, al`,
/// so no argument register is touched).
pub const HYPERCALL_PORT: u16 = 0xe7;

use kvm_bindings::kvm_cpuid_entry2;

/// One CPUID leaf (subleaf 0).
pub fn leaf(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    }
}

/// A hypervisor ABI pvi-sim presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Personality {
    /// No hypervisor: the hypervisor bit clear, no 0x4000_0000 leaves.
    None,
    /// KVM, with the features in-kernel KVM serves here.
    Kvm,
    /// Xen HVM.
    Xen,
    /// Hyper-V.
    Hyperv,
    /// VMware.
    Vmware,
}

impl Personality {
    /// `Err` with the reason when this personality cannot run yet.
    pub fn available(self) -> Result<(), String> {
        match self {
            Personality::None
            | Personality::Kvm
            | Personality::Vmware
            | Personality::Hyperv
            | Personality::Xen => Ok(()),
        }
    }

    /// The leaves from 0x4000_0000 this personality answers vCPU `vcpu`,
    /// given what the host's KVM supports, the vCPUs' TSC frequency and
    /// their number.
    pub fn cpuid_leaves(
        self,
        supported: &[kvm_cpuid_entry2],
        tsc_khz: u32,
        vcpu: u32,
        cpus: u32,
    ) -> Vec<kvm_cpuid_entry2> {
        match self {
            Personality::Kvm => kvm::cpuid_leaves(supported),
            Personality::Vmware => vmware::cpuid_leaves(tsc_khz),
            Personality::Hyperv => hyperv::cpuid_leaves(cpus),
            Personality::Xen => xen::cpuid_leaves(tsc_khz, vcpu),
            Personality::None => Vec::new(),
        }
    }
}
