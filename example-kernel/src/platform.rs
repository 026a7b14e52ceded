//! What the backends need to know about this kernel: everything below
//! 4 GiB is identity-mapped, which CPU is which (from the MADT), the vectors
//! it uses and the ACPI power registers. And what the rest of the kernel
//! needs to know about how it came in: which entry ran, so that the few
//! things a ring-3 kernel reads differently (its interrupt flag, its CPU's
//! id) are read the right way.

use crate::firmware::Machine;
use pvi_backends::platform::{Acpi, Platform, Vectors};
use pvi_sdk::types::ApicId;

/// The kernel's code segment selector, whose low two bits are the ring it
/// runs in: 0 natively and under HVM/PVH, 3 as a 64-bit Xen PV guest.
pub fn code_segment() -> u16 {
    use x86_64::instructions::segmentation::{Segment, CS};
    CS::get_reg().0
}

/// How the kernel came in: what it runs on top of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The PVH entry (boot.rs), in ring 0: bare metal, KVM, Xen PVH.
    Pvh,
    /// The Xen PV entry (xen_pv_entry.rs), in ring 3 on Xen's page tables.
    XenPv,
}

static ENTRY: spin::Once<Entry> = spin::Once::new();

/// Record the entry the kernel came through; the first call counts.
pub fn set_entry(entry: Entry) {
    ENTRY.call_once(|| entry);
}

/// The entry the kernel came through (PVH until one is recorded).
pub fn entry() -> Entry {
    ENTRY.get().copied().unwrap_or(Entry::Pvh)
}

/// The running CPU's id as the IPI ops take it: its local APIC id, or on
/// Xen PV (no APIC) its vCPU id, which is its index.
pub fn apic_id() -> u32 {
    match entry() {
        Entry::Pvh => crate::apic::id(),
        Entry::XenPv => crate::cpu_local::index() as u32,
    }
}

/// Whether this CPU takes interrupts now, read from the flag itself and
/// not through an op: RFLAGS.IF in ring 0; on Xen PV, where IF means
/// nothing, the vCPU's `evtchn_upcall_mask` in its hypervisor area.
pub fn interrupts_enabled() -> bool {
    match entry() {
        Entry::Pvh => {
            use x86_64::registers::rflags::{self, RFlags};
            rflags::read().contains(RFlags::INTERRUPT_FLAG)
        }
        Entry::XenPv => crate::xen_pv_checks::upcall_mask(crate::cpu_local::index()) == 0,
    }
}

/// What [`interrupts_enabled`] reads, for a report.
pub fn interrupt_flag_name() -> &'static str {
    match entry() {
        Entry::Pvh => "RFLAGS.IF",
        Entry::XenPv => "evtchn_upcall_mask",
    }
}

/// The local timer's vector.
pub const TIMER_VECTOR: u8 = 0x40;
/// The wake-up IPI.
pub const KICK_VECTOR: u8 = 0x41;
/// The remote TLB flush IPI.
pub const FLUSH_VECTOR: u8 = 0x42;
/// The `bench` word's self-IPIs, whose handler times end of interrupt.
pub const BENCH_VECTOR: u8 = 0x43;
/// The `exits` word's IPIs, whose handler counts end of interrupt.
pub const EXITS_VECTOR: u8 = 0x44;
/// Xen's event-channel upcall, which brings its timer.
pub const UPCALL_VECTOR: u8 = 0x45;
/// Where the xAPIC registers are (identity-mapped by the boot code).
pub const XAPIC_BASE: usize = 0xfee0_0000;

/// This kernel.
pub struct Kernel;

/// The platform the backends are given.
pub static KERNEL: Kernel = Kernel;

static MACHINE: spin::Once<Machine> = spin::Once::new();

/// Record what the firmware said; the first call counts.
pub fn set_machine(machine: Machine) -> &'static Machine {
    MACHINE.call_once(|| machine)
}

/// What the firmware said, once read.
pub fn machine() -> Option<&'static Machine> {
    MACHINE.get()
}

/// The vectors of the native routines, whichever entry the kernel came
/// through.
pub fn vectors() -> Vectors {
    Vectors {
        timer: TIMER_VECTOR,
        kick: KICK_VECTOR,
        flush: FLUSH_VECTOR,
        upcall: UPCALL_VECTOR,
    }
}

impl Platform for Kernel {
    fn gpa(&self, addr: usize) -> u64 {
        addr as u64
    }

    fn cpu_index(&self) -> usize {
        crate::cpu_local::index()
    }

    fn cpu_of_apic(&self, apic: ApicId) -> Option<usize> {
        machine().and_then(|m| m.apic_ids[..m.cpus].iter().position(|&a| a == apic.0))
    }

    fn vectors(&self) -> Vectors {
        vectors()
    }

    fn acpi(&self) -> Acpi {
        machine().map(|m| m.power).unwrap_or_default()
    }

    fn xapic(&self) -> Option<usize> {
        Some(XAPIC_BASE)
    }

    /// The boot page tables identity-map the low 4 GiB, where Xen places
    /// its special pages.
    fn map_gpa(&self, gpa: u64) -> Option<usize> {
        (gpa < 1 << 32).then_some(gpa as usize)
    }

    fn cpu_area(&self) -> Option<usize> {
        crate::cpu_local::area(crate::cpu_local::index())
    }

    /// Page 8, once the boot CPU found it free RAM (`smp::start_all`).
    fn cpu_start_page(&self) -> Option<u64> {
        crate::smp::start_page()
    }
}
