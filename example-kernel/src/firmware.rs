//! What the ACPI tables say about the machine: its CPUs (MADT), the power-off
//! and reset registers (FADT, the DSDT's `\_S5`). Read once, on the boot CPU,
//! with the `acpi` crate; everything below 4 GiB is identity-mapped, so a
//! "mapping" is the physical address itself.

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiError, AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;
use pvi_backends::platform::Acpi;

/// The most CPUs this kernel starts (each has a 64 KiB stack and a 16 KiB
/// fault stack in `.bss`); the backends keep records for more.
pub const MAX_CPUS: usize = 128;

/// The machine as the firmware describes it.
#[derive(Clone, Copy, Debug)]
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
    /// Why the machine has no CMOS RTC, when its FADT says so (a Xen PVH
    /// domU's does): the self-tests then do not poll one.
    pub no_cmos_rtc: Option<&'static str>,
    /// The root table's signature was wrong and was repaired (see
    /// [`repaired_root`]); the boot report says so.
    pub root_repaired: Option<[u8; 4]>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            apic_ids: [0; MAX_CPUS],
            cpus: 0,
            cpus_ignored: 0,
            power: Acpi::default(),
            pm_timer: None,
            no_cmos_rtc: None,
            root_repaired: None,
        }
    }
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
    let (tables, root_repaired) = match unsafe { AcpiTables::from_rsdp(Identity, rsdp as usize) } {
        Ok(tables) => (tables, None),
        Err(
            AcpiError::SdtInvalidSignature(_)
            | AcpiError::SdtInvalidOemId(_)
            | AcpiError::SdtInvalidTableId(_),
        ) => {
            // SAFETY: the caller's contract: `rsdp` is the loader's RSDP.
            let (tables, found) = unsafe { tables_from_repaired_root(rsdp)? };
            (tables, Some(found))
        }
        Err(e) => return Err(e),
    };
    let mut machine = Machine {
        root_repaired,
        ..Machine::default()
    };
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
            // Address 0 is none: a hardware-reduced FADT leaves it zero.
            machine.power.pm1a_control = u16::try_from(pm1a.address).ok().filter(|&p| p != 0);
        }
    }
    // A hardware-reduced platform has no PM1 blocks: power-off is the
    // sleep control register.
    if let Ok(Some(sleep)) = fadt.sleep_control_register() {
        if sleep.address_space == AddressSpace::SystemIo {
            machine.power.sleep_control = u16::try_from(sleep.address).ok().filter(|&p| p != 0);
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
    machine.no_cmos_rtc = if { fadt.flags }.system_is_hw_reduced_acpi() {
        Some("the FADT says this is a hardware-reduced ACPI platform")
    } else if { fadt.iapc_boot_arch }.use_time_and_alarm_namespace_for_rtc() {
        Some("the FADT's IAPC_BOOT_ARCH says so (CMOS RTC not present)")
    } else {
        None
    };
    let century = fadt.century;
    machine.power.century = (century != 0).then_some(century);
    if let Ok(dsdt) = tables.dsdt() {
        let (start, length) = (dsdt.address as *const u8, dsdt.length as usize);
        // SAFETY: the DSDT's AML stream, identity-mapped, `length` bytes.
        let aml = unsafe { core::slice::from_raw_parts(start, length) };
        machine.power.s5_sleep_type = Acpi::s5_sleep_type(aml).unwrap_or(0);
    }
    Ok(machine)
}

/// The tables through a repaired copy of the root table
/// ([`repaired_root`]), and the signature the original had.
///
/// # Safety
///
/// As for [`read`].
unsafe fn tables_from_repaired_root(rsdp: u64) -> Result<(AcpiTables<Identity>, [u8; 4]), Error> {
    // SAFETY: the caller's contract.
    let Some((copy, found)) = (unsafe { repaired_root(rsdp) }) else {
        return Err(AcpiError::SdtInvalidSignature(acpi::sdt::Signature::XSDT));
    };
    // SAFETY: `copy` is a checked root table in kernel memory, whose
    // entries are the firmware's (identity-mapped) tables.
    let tables = unsafe { AcpiTables::from_rsdt(Identity, 2, copy)? };
    Ok((tables, found))
}

/// The largest root table [`repaired_root`] copies: a header and 507
/// eight-byte entries.
const ROOT_COPY_BYTES: usize = 4096;

/// The repaired copy of the root table (written once, on the boot CPU).
static ROOT_COPY: spin::Once<RootCopy> = spin::Once::new();

#[repr(C, align(8))]
struct RootCopy([u8; ROOT_COPY_BYTES]);

/// A copy of the XSDT that a revision-2 RSDP names, with its signature
/// set to `XSDT`, its OEM id to the RSDP's and its OEM table id to blanks,
/// when everything else about it holds: the RSDP's
/// extended checksum, the table's length (a header and whole 8-byte
/// entries) and its own checksum. Returns the copy's address and the
/// signature that was found.
///
/// Why: the real Xen 4.17 builds a PVH dom0's XSDT by copying the header
/// of the host's XSDT, and on a host whose firmware has only an RSDT
/// (SeaBIOS, QEMU's q35) it copies 36 bytes from address 0 instead (the
/// real-mode interrupt table: the signature reads `53 ff 00 f0`, the OEM
/// ids are not text), then fills in a correct length, entries and
/// checksum. Later Xen copies the RSDT's header and sets the `X`. The acpi
/// crate rightly refuses that header; the entries are sound.
///
/// # Safety
///
/// `rsdp` is the physical address of an RSDP below 4 GiB, identity-mapped.
unsafe fn repaired_root(rsdp: u64) -> Option<(usize, [u8; 4])> {
    // SAFETY: the caller's contract; a revision-2 RSDP is 36 bytes.
    let rsdp = unsafe { core::slice::from_raw_parts(rsdp as *const u8, 36) };
    let sum = |bytes: &[u8]| bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if &rsdp[..8] != b"RSD PTR " || rsdp[15] < 2 || sum(rsdp) != 0 {
        return None;
    }
    let xsdt = u64::from_le_bytes(rsdp[24..32].try_into().ok()?);
    if xsdt == 0 || xsdt >= 1 << 32 {
        return None;
    }
    // SAFETY: the XSDT's header, below 4 GiB (checked), identity-mapped.
    let header = unsafe { core::slice::from_raw_parts(xsdt as *const u8, 36) };
    let length = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if !(36..=ROOT_COPY_BYTES).contains(&length) || !(length - 36).is_multiple_of(8) {
        return None;
    }
    // SAFETY: the whole table, `length` bytes as its header says (bounded).
    let table = unsafe { core::slice::from_raw_parts(xsdt as *const u8, length) };
    if sum(table) != 0 {
        return None;
    }
    let found: [u8; 4] = table[..4].try_into().ok()?;
    let copy = ROOT_COPY.call_once(|| {
        let mut copy = RootCopy([0; ROOT_COPY_BYTES]);
        copy.0[..length].copy_from_slice(table);
        copy.0[..4].copy_from_slice(b"XSDT");
        copy.0[10..16].copy_from_slice(&rsdp[9..15]);
        copy.0[16..24].copy_from_slice(b"        ");
        // Keep the sum at zero: what the signature gained, the checksum
        // (byte 9) gives back.
        copy.0[9] = copy.0[9].wrapping_sub(sum(&copy.0[..length]));
        copy
    });
    Some((copy.0.as_ptr() as usize, found))
}
