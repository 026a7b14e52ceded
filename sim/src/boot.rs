//! Loading a PVH kernel: its ELF segments, the command line, the
//! `hvm_start_info` and memory map (Xen's `arch-x86/hvm/start_info.h`), and
//! the vCPU state the PVH entry expects: 32-bit protected mode, paging off,
//! flat segments, `ebx` holding the start info's address.

use kvm_ioctls::VcpuFd;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// "xEn3" with the 0x80 bit of the "E" set.
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Where the start info, the memory map and the command line go: below the
/// page 8 the example kernel uses to start CPUs, and below the kernel.
const START_INFO: u64 = 0x6000;
const MEMMAP: u64 = 0x7000;
const CMDLINE: u64 = 0x2_0000;
const CMDLINE_MAX: usize = 4095;
/// E820 type of usable RAM.
const E820_RAM: u32 = 1;
/// E820 type of ACPI tables (reclaimable once read).
const E820_ACPI: u32 = 3;
/// E820 type of memory that is not the guest's to use.
const E820_RESERVED: u32 = 2;
/// The legacy hole: 640 KiB to 1 MiB is not RAM.
const LOW_RAM_END: u64 = 0xa_0000;
const HIGH_RAM_START: u64 = 0x10_0000;

/// The page the `xen` personality's PV console ring lives in: the last
/// of a guest of `ram` bytes, kept out of the memory map's RAM as Xen
/// keeps its special pages (console, xenstore) out of an HVM guest's.
pub fn console_page(ram: u64) -> u64 {
    ram - 4096
}

/// Where the loaded kernel starts, and what to pass it.
pub struct Loaded {
    /// The PVH entry point (guest-physical, 32-bit).
    pub entry: u64,
    /// The `hvm_start_info` address, for `ebx`.
    pub start_info: u64,
    /// The memory map (address, size, E820 type), for a hypervisor that
    /// answers for it (`XENMEM_memory_map`).
    pub memory_map: Vec<(u64, u64, u32)>,
}

/// Which `hvm_start_info` the kernel gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfo {
    /// Version 1, with the memory map.
    V1,
    /// Version 0, which has no memory map: what the real Xen 4.17 gives a
    /// PVH dom0, which must ask `XENMEM_memory_map`.
    V0,
}

/// Load `kernel` into `memory` with `cmdline`, for a guest of `ram` bytes
/// whose ACPI RSDP is at `rsdp` (in [`crate::acpi::TABLES`]).
pub fn load(
    memory: &GuestMemoryMmap,
    kernel: &Path,
    cmdline: &str,
    ram: u64,
    rsdp: u64,
    version: StartInfo,
) -> Result<Loaded, String> {
    let mut file = std::fs::File::open(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let result = Elf::load(memory, None, &mut file, None)
        .map_err(|e| format!("{}: not a loadable ELF kernel: {e}", kernel.display()))?;
    let entry = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(at) => at.0,
        _ => {
            return Err(format!(
                "{}: no PVH entry (an ELF note \"Xen\", type 18, XEN_ELFNOTE_PHYS32_ENTRY)",
                kernel.display()
            ))
        }
    };
    if cmdline.len() > CMDLINE_MAX {
        return Err(format!(
            "the command line is longer than {CMDLINE_MAX} bytes"
        ));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    memory
        .write_slice(&bytes, GuestAddress(CMDLINE))
        .map_err(|e| format!("writing the command line: {e}"))?;
    let memmap = [
        hvm_memmap_table_entry {
            addr: 0,
            size: crate::acpi::TABLES.start,
            type_: E820_RAM,
            reserved: 0,
        },
        hvm_memmap_table_entry {
            addr: crate::acpi::TABLES.start,
            size: LOW_RAM_END - crate::acpi::TABLES.start,
            type_: E820_ACPI,
            reserved: 0,
        },
        hvm_memmap_table_entry {
            addr: HIGH_RAM_START,
            size: console_page(ram) - HIGH_RAM_START,
            type_: E820_RAM,
            reserved: 0,
        },
        hvm_memmap_table_entry {
            addr: console_page(ram),
            size: ram - console_page(ram),
            type_: E820_RESERVED,
            reserved: 0,
        },
    ];
    let start_info = match version {
        StartInfo::V1 => hvm_start_info {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            cmdline_paddr: CMDLINE,
            memmap_paddr: MEMMAP,
            memmap_entries: memmap.len() as u32,
            rsdp_paddr: rsdp,
            ..Default::default()
        },
        StartInfo::V0 => hvm_start_info {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 0,
            cmdline_paddr: CMDLINE,
            rsdp_paddr: rsdp,
            ..Default::default()
        },
    };
    let mut params = BootParams::new::<hvm_start_info>(&start_info, GuestAddress(START_INFO));
    params.set_sections::<hvm_memmap_table_entry>(&memmap, GuestAddress(MEMMAP));
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, memory)
        .map_err(|e| format!("writing hvm_start_info: {e}"))?;
    Ok(Loaded {
        entry,
        start_info: START_INFO,
        memory_map: memmap.iter().map(|e| (e.addr, e.size, e.type_)).collect(),
    })
}

/// Put the boot vCPU where the PVH entry expects it.
pub fn set_entry_state(vcpu: &VcpuFd, loaded: &Loaded) -> Result<(), String> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    let flat = |selector: u16, type_: u8| kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = flat(0x08, 0xb); // execute/read, accessed
    let data = flat(0x10, 0x3); // read/write, accessed
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.cr0 = 0x11; // PE, ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: loaded.entry,
        rbx: loaded.start_info,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))
}
