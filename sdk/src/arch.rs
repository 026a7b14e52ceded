//! The few instructions the SDK's logic needs from the CPU, kept apart so
//! that the logic itself runs on the host. MSRs and ports go through the
//! `x86_64` crate; these functions keep one name per access, with the
//! safety contract the SDK's callers rely on.

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::detect::{Cpu, Regs};
use crate::generated::vmware;

/// CPUID (through raw-cpuid). Every x86-64 CPU has it, and it has no side
/// effects.
pub fn cpuid(leaf: u32, subleaf: u32) -> Regs {
    let r = raw_cpuid::native_cpuid::cpuid_count(leaf, subleaf);
    Regs {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Read a model-specific register.
///
/// # Safety
///
/// Ring 0 only, and the MSR must exist (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees ring 0 and that the MSR exists.
    unsafe { Msr::new(msr).read() }
}

/// Write a model-specific register.
///
/// # Safety
///
/// Ring 0 only; the MSR must exist and accept `value`, and writing it must
/// not break memory safety (an MSR can point the hypervisor at memory).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid.
    unsafe { Msr::new(msr).write(value) }
}

/// Read a byte from an I/O port.
///
/// # Safety
///
/// Ring 0 (or IOPL) only; reading the port must have no effect the caller
/// did not intend.
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: the caller guarantees the read is intended.
    unsafe { Port::new(port).read() }
}

/// Read 32 bits from an I/O port.
///
/// # Safety
///
/// Ring 0 (or IOPL) only; reading the port must have no effect the caller
/// did not intend.
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: the caller guarantees the read is intended.
    unsafe { Port::new(port).read() }
}

/// Write a byte to an I/O port.
///
/// # Safety
///
/// Ring 0 (or IOPL) only; the write must be intended.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees the write is intended.
    unsafe { Port::new(port).write(value) }
}

/// The real CPU, for [`crate::detect::detect`] in a kernel.
///
/// Probing the VMware backdoor executes `in` on its port: in ring 0 that is
/// harmless where no one answers (the read returns all ones), but in user
/// mode it faults, so this is for kernels only.
pub struct Hardware;

impl Cpu for Hardware {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Regs {
        cpuid(leaf, subleaf)
    }

    fn probe(&mut self, probe: &str) -> Option<u32> {
        if probe != "backdoor" {
            return None;
        }
        let calls = vmware::Hypercalls::new(vmware::Instruction::InPort);
        // SAFETY: in ring 0 (the contract of `Hardware`) reading the backdoor
        // port is harmless whether or not VMware is there; GETVERSION
        // writes no memory.
        let out = unsafe { calls.bdoor_cmd_getversion(u32::MAX) };
        (out.magic == vmware::BDOOR_MAGIC).then_some(out.version)
    }
}

/// Read a 16-bit word from an I/O port.
///
/// # Safety
///
/// As for [`inb`].
pub unsafe fn inw(port: u16) -> u16 {
    // SAFETY: the caller guarantees the read is intended.
    unsafe { Port::new(port).read() }
}

/// Write a 16-bit word to an I/O port.
///
/// # Safety
///
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller guarantees the write is intended.
    unsafe { Port::new(port).write(value) }
}
