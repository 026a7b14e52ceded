//! What the backends need to know about this kernel: everything is
//! identity-mapped, one CPU so far, and the vectors it uses.

use pvi_backends::platform::{Platform, Vectors};
use pvi_sdk::types::ApicId;

/// The local timer's vector.
pub const TIMER_VECTOR: u8 = 0x40;
/// The wake-up IPI.
pub const KICK_VECTOR: u8 = 0x41;
/// The remote TLB flush IPI.
pub const FLUSH_VECTOR: u8 = 0x42;

/// This kernel.
pub struct Kernel;

/// The platform the backends are given.
pub static KERNEL: Kernel = Kernel;

impl Platform for Kernel {
    fn gpa(&self, addr: usize) -> u64 {
        addr as u64
    }

    fn cpu_index(&self) -> usize {
        0
    }

    fn cpu_of_apic(&self, apic: ApicId) -> Option<usize> {
        (apic.0 < 64).then_some(apic.0 as usize)
    }

    fn vectors(&self) -> Vectors {
        Vectors {
            timer: TIMER_VECTOR,
            kick: KICK_VECTOR,
            flush: FLUSH_VECTOR,
        }
    }

    fn xapic(&self) -> Option<usize> {
        Some(0xfee0_0000)
    }
}
