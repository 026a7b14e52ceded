//! The ACPI tables the guest finds through `hvm_start_info.rsdp_paddr`:
//! RSDP, XSDT, FADT (the PM1a control port pvi-sim answers), MADT (one
//! local APIC per vCPU, the IOAPIC) and a DSDT holding only `\_S5`. Built
//! with the rust-vmm `acpi_tables` crate. For Xen's hardware domain the
//! XSDT's header is the one the real Xen 4.17 writes.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the tables go: the top of conventional memory, which the memory
/// map marks as ACPI data.
pub const TABLES: std::ops::Range<u64> = 0x9_0000..0xa_0000;
/// The PM1a control register (an I/O port, as on QEMU's q35).
pub const PM1A_CONTROL_PORT: u16 = 0x604;
/// The sleep control register of a hardware-reduced platform (FADT
/// SLEEP_CONTROL_REG, ACPI 6.5 §4.8.3.7): SLP_TYP in bits 4:2, SLP_EN bit 5.
pub const SLEEP_CONTROL_PORT: u16 = 0x3b0;
/// SLP_TYPa of `\_S5`: writing it with SLP_EN powers off.
pub const S5_SLEEP_TYPE: u8 = 5;
const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;
const IOAPIC_ADDRESS: u32 = 0xfec0_0000;
const OEM_ID: [u8; 6] = *b"PVISIM";
const OEM_TABLE_ID: [u8; 8] = *b"PVISIM  ";

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// The XSDT's header as the real Xen 4.17 writes it for its PVH dom0 on a
/// host whose firmware has only an RSDT (QEMU's SeaBIOS): 36 bytes copied
/// from address 0, the real-mode interrupt table, whose every vector
/// there is f000:ff53 (`53 ff 00 f0`); then the right length and a
/// checksum that holds.
fn as_xen_dom0_sees_it(xsdt: &mut [u8]) {
    const VECTOR: [u8; 4] = [0x53, 0xff, 0x00, 0xf0];
    for (i, byte) in xsdt.iter_mut().enumerate().take(36) {
        if !(4..8).contains(&i) {
            *byte = VECTOR[i % 4];
        }
    }
    xsdt[9] = 0;
    let sum = xsdt.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    xsdt[9] = 0u8.wrapping_sub(sum);
}

/// What a platform's tables say differently from the plain ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// The XSDT's header is what the real Xen 4.17 gives its dom0
    /// ([`as_xen_dom0_sees_it`]).
    pub xsdt_header_from_address_0: bool,
    /// The FADT's IAPC_BOOT_ARCH says there is no CMOS RTC and no VGA, as
    /// Xen's tables for a PVH domU do (Xen's tools/libacpi/build.c).
    pub no_legacy_devices: bool,
    /// ACPI hardware-reduced mode: no PM1 blocks; a sleep control
    /// register instead.
    pub hardware_reduced: bool,
}

/// IAPC_BOOT_ARCH bits (ACPI 6.5, table 5.11).
const IAPC_BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// Write the tables for `cpus` vCPUs (APIC ids 0..cpus), as `quirks`
/// says; the RSDP's address.
pub fn write(memory: &GuestMemoryMmap, cpus: u8, quirks: Quirks) -> Result<u64, String> {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, 1);
    let s5 = [S5_SLEEP_TYPE, S5_SLEEP_TYPE, 0, 0];
    aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(s5.iter().map(|b| b as &dyn Aml).collect()),
    )
    .to_aml_bytes(&mut dsdt);
    dsdt.update_checksum();

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        1,
        LocalInterruptController::Address(LOCAL_APIC_ADDRESS),
    );
    for id in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, IOAPIC_ADDRESS, 0));

    // Lay the tables out one after another, 16-byte aligned.
    let mut next = TABLES.start;
    let mut place = |len: usize| {
        let at = next;
        next = (next + len as u64 + 15) & !15;
        at
    };
    let rsdp_at = place(Rsdp::len());
    let xsdt_at = place(36 + 2 * 8);
    let dsdt_bytes = dsdt.as_slice().to_vec();
    let dsdt_at = place(dsdt_bytes.len());
    let madt_bytes = bytes(&madt);
    let madt_at = place(madt_bytes.len());
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1);
    if quirks.hardware_reduced {
        fadt = fadt.flag(Flags::HwReducedAcpi);
        fadt.sleep_control_reg = GAS::new(
            AddressSpace::SystemIo,
            8,
            0,
            AccessSize::ByteAccess,
            u64::from(SLEEP_CONTROL_PORT),
        );
    } else {
        fadt.pm1a_cnt_blk = u32::from(PM1A_CONTROL_PORT).into();
        fadt.pm1_cnt_len = 2;
    }
    if quirks.no_legacy_devices {
        fadt.iapc_boot_arch =
            (IAPC_BOOT_ARCH_VGA_NOT_PRESENT | IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT).into();
    }
    let fadt = fadt.dsdt_64(dsdt_at).finalize();
    let fadt_bytes = bytes(&fadt);
    let fadt_at = place(fadt_bytes.len());
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let mut xsdt_bytes = bytes(&xsdt);
    if quirks.xsdt_header_from_address_0 {
        as_xen_dom0_sees_it(&mut xsdt_bytes);
    }
    let rsdp_bytes = bytes(&Rsdp::new(OEM_ID, xsdt_at));
    if next > TABLES.end || xsdt_bytes.len() != 36 + 2 * 8 {
        return Err("the ACPI tables do not fit their area".into());
    }
    for (at, data) in [
        (rsdp_at, &rsdp_bytes),
        (xsdt_at, &xsdt_bytes),
        (dsdt_at, &dsdt_bytes),
        (madt_at, &madt_bytes),
        (fadt_at, &fadt_bytes),
    ] {
        memory
            .write_slice(data, GuestAddress(at))
            .map_err(|e| format!("writing ACPI tables: {e}"))?;
    }
    Ok(rsdp_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_legacy_devices_the_fadt_says_there_is_no_rtc() {
        let iapc_boot_arch = |quirks| {
            let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
            let rsdp = write(&memory, 1, quirks).unwrap();
            let xsdt: u64 = memory.read_obj(GuestAddress(rsdp + 24)).unwrap();
            let fadt: u64 = memory.read_obj(GuestAddress(xsdt + 36)).unwrap();
            let signature: [u8; 4] = memory.read_obj(GuestAddress(fadt)).unwrap();
            assert_eq!(&signature, b"FACP");
            // IAPC_BOOT_ARCH is the FADT's 16-bit field at offset 109.
            memory.read_obj::<u16>(GuestAddress(fadt + 109)).unwrap()
        };
        assert_eq!(iapc_boot_arch(Quirks::default()), 0);
        let none = iapc_boot_arch(Quirks {
            no_legacy_devices: true,
            ..Quirks::default()
        });
        assert_ne!(none & IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT, 0);
    }

    #[test]
    fn a_hardware_reduced_fadt_names_the_sleep_control_register_and_no_pm1a() {
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let rsdp = write(
            &memory,
            1,
            Quirks {
                hardware_reduced: true,
                ..Quirks::default()
            },
        )
        .unwrap();
        let xsdt: u64 = memory.read_obj(GuestAddress(rsdp + 24)).unwrap();
        let fadt: u64 = memory.read_obj(GuestAddress(xsdt + 36)).unwrap();
        // ACPI 6.5 Table 5.9: Flags at 112 (HW_REDUCED_ACPI is bit 20),
        // PM1a_CNT_BLK at 64, SLEEP_CONTROL_REG (a GAS) at 244.
        let flags: u32 = memory.read_obj(GuestAddress(fadt + 112)).unwrap();
        let pm1a: u32 = memory.read_obj(GuestAddress(fadt + 64)).unwrap();
        let space: u8 = memory.read_obj(GuestAddress(fadt + 244)).unwrap();
        let port: u64 = memory.read_obj(GuestAddress(fadt + 248)).unwrap();
        assert_ne!(flags & 1 << 20, 0);
        assert_eq!(pm1a, 0);
        assert_eq!((space, port), (1, u64::from(SLEEP_CONTROL_PORT)));
    }

    #[test]
    fn xen_dom0s_xsdt_header_is_the_interrupt_table_with_a_sound_length_and_checksum() {
        let mut xsdt = bytes(&XSDT::new(OEM_ID, OEM_TABLE_ID, 1));
        xsdt.extend_from_slice(&0x1234u64.to_le_bytes());
        let length = xsdt.len() as u32;
        xsdt[4..8].copy_from_slice(&length.to_le_bytes());
        as_xen_dom0_sees_it(&mut xsdt);
        assert_eq!(&xsdt[..4], &[0x53, 0xff, 0x00, 0xf0]);
        assert_eq!(u32::from_le_bytes(xsdt[4..8].try_into().unwrap()), 44);
        assert_eq!(xsdt.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(&xsdt[36..], &0x1234u64.to_le_bytes());
    }
}
