//! What the ACPI tables say about the machine: its CPUs (MADT), the power-off
//! and reset registers (FADT, the DSDT's `\_S5`). Read once, on the boot CPU,
//! with the `acpi` crate; everything below 4 GiB is identity-mapped, so a
//! "mapping" is the physical address itself.

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;
use pvi_backends::platform::Acpi;

/// The most CPUs this kernel starts.
pub const MAX_CPUS: usize = 8;

/// The machine as the firmware describes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Machine {
    /// APIC ids of the enabled CPUs, in MADT order (the boot CPU among them).
    pub apic_ids: [u32; MAX_CPUS],
    /// How many of `apic_ids` are set.
    pub cpus: usize,
    /// CPUs the MADT listed beyond [`MAX_CPUS`].
    pub cpus_ignored: usize,
    /// Power registers for the native `shutdown`.
    pub power: Acpi,
    /// The ACPI PM timer's I/O port, if the FADT names one (for `bench`).
    pub pm_timer: Option<u16>,
}

/// Identity "mapping": the tables live below 4 GiB, which the boot code maps.
#[derive(Clone, Copy)]
struct Identity;

/// What a table at guest-physical 0 reads as: zeros, so its signature
/// and checksum fail. (Rust may not dereference a null pointer, and a
/// hostile table may point there.)
#[repr(align(4096))]
struct ZeroPage([u8; 4096]);
static ZERO_PAGE: ZeroPage = ZeroPage([0; 4096]);

impl AcpiHandler for Identity {
    unsafe fn map_physical_region<T>(
        &self,
        address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let (virt, len) = match NonNull::new(address as *mut T) {
            Some(p) => (p, size),
            None => (
                NonNull::from(&ZERO_PAGE).cast::<T>(),
                size.min(ZERO_PAGE.0.len()),
            ),
        };
        // SAFETY: the boot page tables identity-map 0..4 GiB, where QEMU puts
        // the ACPI tables; the crate passes the address of a valid `T`
        // (address 0 reads the zero page instead).
        unsafe { PhysicalMapping::new(address, virt, len, len, Identity) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Why the tables could not be read.
pub type Error = acpi::AcpiError;

/// Read the MADT and FADT from the RSDP the PVH loader gave.
///
/// # Safety
///
/// `rsdp` is the physical address from `hvm_start_info`, below 4 GiB.
pub unsafe fn read(rsdp: u64) -> Result<Machine, Error> {
    if rsdp == 0 || rsdp >= 1 << 32 {
        return Err(acpi::AcpiError::NoValidRsdp);
    }
    // SAFETY: the caller's contract; `Identity` maps what the crate asks.
    let tables = unsafe { AcpiTables::from_rsdp(Identity, rsdp as usize)? };
    let mut machine = Machine::default();
    let madt = tables.find_table::<Madt>()?;
    for entry in madt.get().entries() {
        let (id, flags) = match entry {
            MadtEntry::LocalApic(e) => (u32::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
            _ => continue,
        };
        // Bit 0: enabled; bit 1: online capable (may be enabled later).
        if flags & 1 == 0 {
            continue;
        }
        if machine.cpus < MAX_CPUS {
            machine.apic_ids[machine.cpus] = id;
            machine.cpus += 1;
        } else {
            machine.cpus_ignored += 1;
        }
    }
    let fadt = tables.find_table::<Fadt>()?;
    if let Ok(pm1a) = fadt.pm1a_control_block() {
        if pm1a.address_space == AddressSpace::SystemIo {
            machine.power.pm1a_control = u16::try_from(pm1a.address).ok();
        }
    }
    if let Ok(reset) = fadt.reset_register() {
        if reset.address_space == AddressSpace::SystemIo && { fadt.flags }
            .supports_system_reset_via_fadt()
        {
            machine.power.reset = u16::try_from(reset.address)
                .ok()
                .map(|port| (port, fadt.reset_value));
        }
    }
    if let Ok(Some(timer)) = fadt.pm_timer_block() {
        if timer.address_space == AddressSpace::SystemIo {
            machine.pm_timer = u16::try_from(timer.address).ok();
        }
    }
    let century = fadt.century;
    machine.power.century = (century != 0).then_some(century);
    if let Ok(dsdt) = tables.dsdt() {
        // SAFETY: the DSDT's AML stream, identity-mapped, `length` bytes.
        let aml =
            unsafe { core::slice::from_raw_parts(dsdt.address as *const u8, dsdt.length as usize) };
        machine.power.s5_sleep_type = Acpi::s5_sleep_type(aml).unwrap_or(0);
    }
    Ok(machine)
}
