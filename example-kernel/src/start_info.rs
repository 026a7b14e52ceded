//! The PVH `hvm_start_info` (Xen xen/include/public/arch-x86/hvm/start_info.h):
//! the command line, the RSDP and the memory map.

/// The start-info magic, "xEn3" with the 0x80 bit of the "E" set.
pub const MAGIC: u32 = 0x336e_c578;

/// The fields of `hvm_start_info` the kernel uses.
#[derive(Clone, Debug)]
pub struct StartInfo {
    /// The kernel command line (empty if none).
    pub cmdline: &'static str,
    /// The ACPI RSDP's physical address, 0 if not given.
    pub rsdp: u64,
    /// Memory map entries.
    pub memmap_entries: u32,
    /// Where the loader put the memory map (physical, 0 if none).
    pub memmap_paddr: u64,
    /// Where the loader put this structure and the command line: memory
    /// the kernel must not reuse while it reads them.
    pub occupied: [core::ops::Range<u64>; 2],
    /// The memory map the hypervisor gave when the loader gave none
    /// ([`StartInfo::adopt_map`]).
    hypervisor_map: [MemoryRegion; MAX_ADOPTED],
    /// How many of `hypervisor_map` are set.
    hypervisor_map_len: usize,
}

/// The most memory map entries [`StartInfo::adopt_map`] keeps.
pub const MAX_ADOPTED: usize = 64;

/// One `hvm_memmap_table_entry`, or one entry of a hypervisor's map.
pub use pvi_backends::platform::MemoryRegion;

/// The E820 type of usable RAM.
pub const RAM: u32 = 1;

impl StartInfo {
    /// Memory map entry `index` (24 bytes each: addr, size, type, reserved).
    pub fn region(&self, index: u32) -> Option<MemoryRegion> {
        if index >= self.memmap_entries || self.memmap_paddr == 0 || self.memmap_paddr >= 1 << 32 {
            return None;
        }
        let at = (self.memmap_paddr as usize + 24 * index as usize) as *const u8;
        // SAFETY: the loader's memory map, `memmap_entries` entries at
        // `memmap_paddr`, identity-mapped below 4 GiB.
        unsafe {
            Some(MemoryRegion {
                addr: at.cast::<u64>().read_unaligned(),
                size: at.add(8).cast::<u64>().read_unaligned(),
                kind: at.add(16).cast::<u32>().read_unaligned(),
            })
        }
    }

    /// Where a memory map from the hypervisor goes, for a loader that gave
    /// none (a version-0 `hvm_start_info`, or no entries): fill the slice,
    /// then [`StartInfo::adopt_map`] how many entries were written.
    pub fn map_buffer(&mut self) -> &mut [MemoryRegion; MAX_ADOPTED] {
        &mut self.hypervisor_map
    }

    /// Take the first `entries` of [`StartInfo::map_buffer`] as the
    /// memory map (at most [`MAX_ADOPTED`]).
    pub fn adopt_map(&mut self, entries: usize) {
        self.hypervisor_map_len = entries.min(MAX_ADOPTED);
    }

    /// Whether `range` is usable RAM that holds none of the loader's data.
    pub fn free_ram(&self, range: core::ops::Range<u64>) -> bool {
        let overlaps = |r: &core::ops::Range<u64>| r.start < range.end && range.start < r.end;
        let table = self.memmap_paddr..self.memmap_paddr + 24 * u64::from(self.memmap_entries);
        let in_ram = (0..self.memmap_entries)
            .filter_map(|i| self.region(i))
            .chain(
                self.hypervisor_map[..self.hypervisor_map_len]
                    .iter()
                    .copied(),
            )
            .any(|r| {
                r.kind == RAM && r.addr <= range.start && range.end <= r.addr.saturating_add(r.size)
            });
        in_ram && !self.occupied.iter().any(overlaps) && !overlaps(&table)
    }
}

/// Read the start info at physical (= virtual, identity-mapped) `address`.
///
/// # Safety
///
/// `address` must be what the PVH loader passed in `ebx`.
pub unsafe fn read(address: u32) -> Option<StartInfo> {
    let base = address as usize as *const u8;
    let at = |offset: usize| base.wrapping_add(offset);
    // Fields: magic (u32 at 0), version (u32 at 4), cmdline_paddr (u64 at
    // 24), rsdp_paddr (u64 at 32); from version 1, memmap_paddr (u64 at 40)
    // and memmap_entries (u32 at 48).

    // SAFETY: the loader's hvm_start_info, in the identity-mapped 4 GiB.
    let (magic, version, cmdline_paddr, rsdp) = unsafe {
        (
            at(0).cast::<u32>().read_unaligned(),
            at(4).cast::<u32>().read_unaligned(),
            at(24).cast::<u64>().read_unaligned(),
            at(32).cast::<u64>().read_unaligned(),
        )
    };
    if magic != MAGIC {
        return None;
    }
    // A version-0 structure ends at 40: what follows is not the loader's.
    let (memmap_paddr, entries) = if version >= 1 {
        // SAFETY: as above; version 1 has these fields.
        unsafe {
            (
                at(40).cast::<u64>().read_unaligned(),
                at(48).cast::<u32>().read_unaligned(),
            )
        }
    } else {
        (0, 0)
    };
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
        memmap_paddr,
        occupied: [
            u64::from(address)..u64::from(address) + 56,
            cmdline_paddr..cmdline_paddr + cmdline.len() as u64 + 1,
        ],
        hypervisor_map: [MemoryRegion::default(); MAX_ADOPTED],
        hypervisor_map_len: 0,
    })
}
