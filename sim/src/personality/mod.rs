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
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The vCPU that made a hypercall, and guest memory as it sees it.
pub struct Caller<'a> {
    /// Its index (and APIC id).
    pub vcpu: u32,
    /// Guest memory.
    pub memory: &'a GuestMemoryMmap,
    /// A guest-linear address to a guest-physical one, through the vCPU's
    /// page tables (hypercall arguments are linear addresses).
    pub translate: &'a dyn Fn(u64) -> Option<u64>,
}

impl Caller<'_> {
    /// Each page-bounded piece of `len` bytes at linear address `gva`:
    /// (guest-physical address, offset into the buffer, length).
    fn pieces(&self, gva: u64, len: usize) -> Option<Vec<(u64, usize, usize)>> {
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < len {
            let at = gva.checked_add(done as u64)?;
            let chunk = (4096 - (at & 0xfff) as usize).min(len - done);
            pieces.push(((self.translate)(at)?, done, chunk));
            done += chunk;
        }
        Some(pieces)
    }

    /// `len` bytes at linear address `gva`; `None` where nothing is mapped.
    pub fn read(&self, gva: u64, len: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; len];
        for (gpa, at, n) in self.pieces(gva, len)? {
            self.memory
                .read_slice(&mut out[at..at + n], GuestAddress(gpa))
                .ok()?;
        }
        Some(out)
    }

    /// Write `bytes` at linear address `gva`; `None` where nothing is
    /// mapped (then nothing is written).
    pub fn write(&self, gva: u64, bytes: &[u8]) -> Option<()> {
        let pieces = self.pieces(gva, bytes.len())?;
        for (gpa, at, n) in pieces {
            self.memory
                .write_slice(&bytes[at..at + n], GuestAddress(gpa))
                .ok()?;
        }
        Some(())
    }
}

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
