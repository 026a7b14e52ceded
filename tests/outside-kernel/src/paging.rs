//! What the kernel's page tables must do for pvi: nothing, except that
//! every address handed to a hypervisor is translated by `Platform::gpa`
//! (the higher-half kernel drops its low mapping to prove it), and, for
//! the hypercall fix-ups on a host that answers a `vmcall` by writing to
//! the instruction, the text must be read-only (see the book).

use crate::boot::KERNEL_OFFSET;
use x86_64::registers::control::{Cr0, Cr0Flags};
use x86_64::structures::paging::{PageTable, PageTableFlags};
use x86_64::PhysAddr;

extern "C" {
    /// The boot PML4 and its page directories (boot.rs).
    static mut boot_pml4: PageTable;
    static mut boot_pd: PageTable;
    /// The end of the text: the linker defines it.
    static etext: u8;
}

const TWO_MIB: usize = 2 << 20;

/// 4 KiB pages for the 2 MiB page holding the text.
#[repr(align(4096))]
struct Table(PageTable);
static mut TEXT_TABLE: Table = Table(PageTable::new());

/// The physical address of kernel memory at `addr`.
pub fn physical(addr: usize) -> u64 {
    (addr - KERNEL_OFFSET) as u64
}

/// Map every page from the start of the text's 2 MiB page up to the end
/// of the text read-only, and make ring 0 obey it (CR0.WP).
pub fn protect_text() {
    let end = (core::ptr::addr_of!(etext) as usize).next_multiple_of(4096);
    let first = physical(end - 1) as usize / TWO_MIB * TWO_MIB;
    assert!(
        end - KERNEL_OFFSET - first <= TWO_MIB,
        "text spans 2 MiB pages"
    );
    // SAFETY: boot CPU, before anything else runs. The new table maps
    // the same physical pages as the 2 MiB page it replaces, so nothing
    // moves; only the text loses its write permission.
    unsafe {
        let table = &mut *core::ptr::addr_of_mut!(TEXT_TABLE.0);
        for (i, entry) in table.iter_mut().enumerate() {
            let at = first + i * 4096;
            let mut flags = PageTableFlags::PRESENT;
            if at + KERNEL_OFFSET >= end {
                flags |= PageTableFlags::WRITABLE;
            }
            entry.set_addr(PhysAddr::new(at as u64), flags);
        }
        let directory = &mut *core::ptr::addr_of_mut!(boot_pd);
        directory[first / TWO_MIB].set_addr(
            PhysAddr::new(physical(core::ptr::addr_of!(TEXT_TABLE) as usize)),
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE,
        );
        x86_64::instructions::tlb::flush_all();
        Cr0::update(|cr0| *cr0 |= Cr0Flags::WRITE_PROTECT);
    }
}

/// Unmap the low half: from here on, an address that was not translated
/// faults instead of working by accident.
pub fn unmap_low_half() {
    // SAFETY: the kernel runs at -2 GiB (its code, data, stack and GDT),
    // which the PML4's last entry maps; nothing uses the low half.
    unsafe {
        (&mut *core::ptr::addr_of_mut!(boot_pml4))[0].set_unused();
    }
    x86_64::instructions::tlb::flush_all();
}
