//! PVH entry: QEMU's `-kernel` loader (and Xen's, and cloud-hypervisor's)
//! starts the kernel in 32-bit protected mode, paging off, at the address
//! in the `XEN_ELFNOTE_PHYS32_ENTRY` note. This maps the first 4 GiB twice
//! with 2 MiB pages, at 0 and (the first 2 GiB of it) at -2 GiB, enters
//! long mode, moves to the kernel's own addresses and calls `kmain`.
//!
//! Nothing here is pvi's: it is the least a kernel needs to run Rust.

/// Where the kernel's addresses are, above its physical ones.
#[cfg(feature = "higher-half")]
pub const KERNEL_OFFSET: usize = 0xffff_ffff_8000_0000;
/// Where the kernel's addresses are, above its physical ones.
#[cfg(not(feature = "higher-half"))]
pub const KERNEL_OFFSET: usize = 0;

core::arch::global_asm!(
    // The PVH note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18), the
    // 32-bit entry point's physical address.
    ".pushsection .note.pvh, \"a\", @note",
    ".balign 4",
    ".long 4, 8, 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".quad _start - {offset}",
    ".popsection",
    ".pushsection .bss.boot, \"aw\", @nobits",
    ".balign 4096",
    ".global boot_pml4",
    "boot_pml4: .space 4096",
    "boot_pdpt_low: .space 4096",
    "boot_pdpt_high: .space 4096",
    ".global boot_pd",
    "boot_pd: .space 4 * 4096",
    "boot_stack: .space 64 * 1024",
    "boot_stack_top:",
    ".popsection",
    ".pushsection .rodata.boot, \"a\"",
    ".balign 8",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00af9a000000ffff", // 0x08: 64-bit code
    ".quad 0x00cf92000000ffff", // 0x10: data
    "boot_gdt_end:",
    "boot_gdt_physical:",
    ".word boot_gdt_end - boot_gdt - 1",
    ".quad boot_gdt - {offset}",
    "boot_gdt_virtual:",
    ".word boot_gdt_end - boot_gdt - 1",
    ".quad boot_gdt",
    ".popsection",
    ".pushsection .text.boot, \"ax\"",
    ".code32",
    ".global _start",
    "_start:",
    "cli",
    "mov esi, ebx", // hvm_start_info, kept for kmain
    // Four page directories of 2 MiB pages: 0..4 GiB, present, writable.
    "mov edi, offset boot_pd - {offset}",
    "mov eax, 0x83",
    "mov ecx, 2048",
    "2:",
    "mov [edi], eax",
    "mov dword ptr [edi + 4], 0",
    "add eax, 0x200000",
    "add edi, 8",
    "loop 2b",
    // 0..4 GiB at 0, and 0..2 GiB at -2 GiB (the PML4's and the PDPT's
    // last two entries).
    "mov edi, offset boot_pdpt_low - {offset}",
    "mov eax, offset boot_pd - {offset}",
    "or eax, 3",
    "mov ecx, 4",
    "3:",
    "mov [edi], eax",
    "mov dword ptr [edi + 4], 0",
    "add eax, 4096",
    "add edi, 8",
    "loop 3b",
    "mov eax, offset boot_pd - {offset}",
    "or eax, 3",
    "mov [boot_pdpt_high - {offset} + 510 * 8], eax",
    "add eax, 4096",
    "mov [boot_pdpt_high - {offset} + 511 * 8], eax",
    "mov eax, offset boot_pdpt_low - {offset}",
    "or eax, 3",
    "mov [boot_pml4 - {offset}], eax",
    "mov eax, offset boot_pdpt_high - {offset}",
    "or eax, 3",
    "mov [boot_pml4 - {offset} + 511 * 8], eax",
    "mov eax, offset boot_pml4 - {offset}",
    "mov cr3, eax",
    "mov eax, cr4",
    "or eax, 1 << 5", // PAE
    "mov cr4, eax",
    "mov ecx, 0xc0000080", // EFER
    "rdmsr",
    "or eax, 1 << 8", // LME
    "wrmsr",
    "mov eax, cr0",
    "or eax, (1 << 31) | 1", // PG, PE
    "mov cr0, eax",
    "lgdt [boot_gdt_physical - {offset}]",
    "push 0x08",
    "mov eax, offset long_start - {offset}",
    "push eax",
    "retf",
    ".code64",
    "long_start:",
    // Still at the physical address: jump to the kernel's own.
    "movabs rax, offset kernel_start",
    "jmp rax",
    "kernel_start:",
    "lgdt [rip + boot_gdt_virtual]",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "xor eax, eax",
    "mov fs, ax",
    "mov gs, ax",
    "lea rsp, [rip + boot_stack_top]",
    "mov edi, esi",
    "call kmain",
    "4:",
    "cli",
    "hlt",
    "jmp 4b",
    ".popsection",
    offset = const KERNEL_OFFSET,
);
