//! The few instructions the SDK's logic needs from the CPU, kept apart so
//! that the logic itself runs on the host.

use crate::detect::{Cpu, Regs};
use crate::generated::vmware;

/// CPUID. Every x86-64 CPU has it, and it has no side effects.
pub fn cpuid(leaf: u32, subleaf: u32) -> Regs {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
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
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees ring 0 and that the MSR exists; RDMSR
    // changes only EAX and EDX.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Write a model-specific register.
///
/// # Safety
///
/// Ring 0 only; the MSR must exist and accept `value`, and writing it must
/// not break memory safety (an MSR can point the hypervisor at memory).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the write is valid; the hypervisor may
    // write memory it was told about, hence no `nomem`.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Read a byte from an I/O port.
///
/// # Safety
///
/// Ring 0 (or IOPL) only; reading the port must have no effect the caller
/// did not intend.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller guarantees the read is intended.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Read 32 bits from an I/O port.
///
/// # Safety
///
/// Ring 0 (or IOPL) only; reading the port must have no effect the caller
/// did not intend.
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: the caller guarantees the read is intended.
    unsafe {
        core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Write a byte to an I/O port.
///
/// # Safety
///
/// Ring 0 (or IOPL) only; the write must be intended.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees the write is intended.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
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
    let v: u16;
    // SAFETY: the caller guarantees the read is intended.
    unsafe {
        core::arch::asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Write a 16-bit word to an I/O port.
///
/// # Safety
///
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller guarantees the write is intended.
    unsafe {
        core::arch::asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}
