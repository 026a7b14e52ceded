//! The PVH `hvm_start_info` (Xen xen/include/public/arch-x86/hvm/start_info.h):
//! the command line, the RSDP and the memory map.

/// The start-info magic, "xEn3" with the 0x80 bit of the "E" set.
pub const MAGIC: u32 = 0x336e_c578;

/// The fields of `hvm_start_info` the kernel uses.
#[derive(Clone, Copy, Debug)]
pub struct StartInfo {
    /// The kernel command line (empty if none).
    pub cmdline: &'static str,
    /// The ACPI RSDP's physical address, 0 if not given.
    pub rsdp: u64,
    /// Memory map entries.
    pub memmap_entries: u32,
}

/// Read the start info at physical (= virtual, identity-mapped) `address`.
///
/// # Safety
///
/// `address` must be what the PVH loader passed in `ebx`.
pub unsafe fn read(address: u32) -> Option<StartInfo> {
    let base = address as usize as *const u8;
    let at = |offset: usize| base.wrapping_add(offset);
    // SAFETY: the loader's hvm_start_info: magic (u32 at 0), cmdline_paddr
    // (u64 at 24), rsdp_paddr (u64 at 32), memmap_entries (u32 at 48),
    // inside the identity-mapped first 4 GiB.
    let (magic, cmdline_paddr, rsdp, entries) = unsafe {
        (
            at(0).cast::<u32>().read_unaligned(),
            at(24).cast::<u64>().read_unaligned(),
            at(32).cast::<u64>().read_unaligned(),
            at(48).cast::<u32>().read_unaligned(),
        )
    };
    if magic != MAGIC {
        return None;
    }
    let cmdline = if cmdline_paddr == 0 || cmdline_paddr >= 1 << 32 {
        ""
    } else {
        let start = cmdline_paddr as usize as *const u8;
        let mut len = 0;
        // SAFETY: a NUL-terminated string the loader placed in low memory;
        // bounded at 4 KiB.
        while len < 4096 && unsafe { *start.add(len) } != 0 {
            len += 1;
        }
        // SAFETY: `len` bytes just read; the loader writes ASCII.
        core::str::from_utf8(unsafe { core::slice::from_raw_parts(start, len) }).unwrap_or("")
    };
    Some(StartInfo {
        cmdline,
        rsdp,
        memmap_entries: entries,
    })
}
