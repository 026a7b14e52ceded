//! Starting a CPU on bare metal (and under any hypervisor that emulates
//! the local APIC): Intel's MP start-up sequence, INIT then STARTUP twice
//! (SDM Vol. 3, "MP Initialization Protocol"; Linux
//! `wakeup_secondary_cpu_via_init`), to a trampoline this module copies
//! into the platform's start page below 1 MiB.
//!
//! The trampoline is position-independent: real mode finds its page from
//! CS, and every linear address it needs (its GDT's, the far jumps' targets)
//! is data in a block at the end of the page, which [`start`] fills before
//! the STARTUP. It enters protected mode, turns on PAE, loads the root,
//! enables long mode and paging (with CR0.WP, so that ring 0 honours
//! read-only pages from its first instruction), and calls the entry with
//! the stack and argument from the block, interrupts off.

use crate::platform;
use core::sync::atomic::{compiler_fence, Ordering::SeqCst};
use pvi_sdk::types::{ApicId, ErrorKind, ErrorOrigin, Gpa, Nanos, PvError};

core::arch::global_asm!(
    // Copied to the start page and run from there, never in place: every
    // address inside is relative to the page, found at run time.
    ".pushsection .rodata.pvi_cpu_start, \"a\"",
    ".balign 16",
    ".global pvi_cpu_start_begin",
    "pvi_cpu_start_begin:",
    ".code16",
    "cli",
    "cld",
    "mov ax, cs",
    "mov ds, ax",
    // ebx: the page's linear address, for protected mode.
    "xor ebx, ebx",
    "mov bx, ax",
    "shl ebx, 4",
    // lgdt [ds:pointer] (a 16-bit offset in the page; a 24-bit base,
    // enough below 1 MiB).
    ".byte 0x0f, 0x01, 0x16",
    ".word pvi_cpu_start_gdt_pointer - pvi_cpu_start_begin",
    "mov eax, cr0",
    "or eax, 1",
    "mov cr0, eax",
    // jmp far dword [ds:protected_far]: its offset (filled) and 0x08.
    ".byte 0x66, 0xff, 0x2e",
    ".word pvi_cpu_start_protected_far - pvi_cpu_start_begin",
    ".code32",
    ".global pvi_cpu_start_protected",
    "pvi_cpu_start_protected:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov eax, cr4",
    "or eax, 1 << 5", // PAE
    "mov cr4, eax",
    // The root, below 4 GiB: the block's first quadword (mov eax,
    // [ebx + disp32]: one symbol per operand is all the assembler takes).
    ".byte 0x8b, 0x83",
    ".long pvi_cpu_start_block - pvi_cpu_start_begin",
    "mov cr3, eax",
    "mov ecx, 0xc0000080", // EFER.LME
    "rdmsr",
    "or eax, 1 << 8",
    "wrmsr",
    "mov eax, cr0",
    "or eax, (1 << 31) | (1 << 16)", // PG, WP
    "mov cr0, eax",
    // jmp far fword [ebx + long_far] (FF /5, a 32-bit displacement): its
    // offset (filled) and 0x18.
    ".byte 0xff, 0xab",
    ".long pvi_cpu_start_long_far - pvi_cpu_start_begin",
    ".code64",
    ".global pvi_cpu_start_long",
    "pvi_cpu_start_long:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    // RIP-relative: the block is as far from here in the copy.
    "mov rax, [rip + pvi_cpu_start_block + 8]",
    "mov rsp, [rip + pvi_cpu_start_block + 16]",
    "mov rdi, [rip + pvi_cpu_start_block + 24]",
    // A call, so that the entry sees the C ABI's stack alignment.
    "call rax",
    "ud2",
    ".balign 8",
    // The GDT: null, 32-bit code, data, 64-bit code.
    ".global pvi_cpu_start_gdt",
    "pvi_cpu_start_gdt:",
    ".quad 0",
    ".quad 0x00cf9a000000ffff",
    ".quad 0x00cf92000000ffff",
    ".quad 0x00af9a000000ffff",
    // Its pointer: the limit, then the linear base (filled).
    "pvi_cpu_start_gdt_pointer:",
    ".word pvi_cpu_start_gdt_pointer - pvi_cpu_start_gdt - 1",
    ".global pvi_cpu_start_gdt_base",
    "pvi_cpu_start_gdt_base:",
    ".long 0",
    ".balign 8",
    ".global pvi_cpu_start_protected_far",
    "pvi_cpu_start_protected_far:",
    ".long 0",
    ".word 0x08",
    ".balign 8",
    ".global pvi_cpu_start_long_far",
    "pvi_cpu_start_long_far:",
    ".long 0",
    ".word 0x18",
    ".balign 8",
    // The block: root, entry, stack, argument (filled).
    ".global pvi_cpu_start_block",
    "pvi_cpu_start_block:",
    ".quad 0, 0, 0, 0",
    ".global pvi_cpu_start_end",
    "pvi_cpu_start_end:",
    ".popsection",
);

// SAFETY: labels of the trampoline above, read-only image bytes; only their addresses are taken.
extern "C" {
    static pvi_cpu_start_begin: u8;
    static pvi_cpu_start_end: u8;
    static pvi_cpu_start_protected: u8;
    static pvi_cpu_start_long: u8;
    static pvi_cpu_start_gdt: u8;
    static pvi_cpu_start_gdt_base: u8;
    static pvi_cpu_start_protected_far: u8;
    static pvi_cpu_start_long_far: u8;
    static pvi_cpu_start_block: u8;
}

/// What the STARTUP's page must be: 4 KiB-aligned, below 1 MiB (its
/// vector is the page number).
const BELOW: u64 = 1 << 20;
/// How long INIT is held before the first STARTUP, and the STARTUPs
/// apart (the SDM's 10 ms and 200 µs).
const INIT_WAIT_NS: u64 = 10_000_000;
const STARTUP_WAIT_NS: u64 = 200_000;

fn native(kind: ErrorKind) -> PvError {
    PvError::new(kind, ErrorOrigin::Native)
}

/// The offset of trampoline label `label` in the copied page.
fn offset(label: &u8) -> usize {
    // Only the label's address is taken.
    let begin = core::ptr::addr_of!(pvi_cpu_start_begin) as usize;
    core::ptr::from_ref(label) as usize - begin
}

/// Start CPU `target` at `entry(arg)` on `stack` under `root`: copy the
/// trampoline into the platform's start page, fill its block, and send
/// INIT, STARTUP, STARTUP, waiting by `clock_ns` in between. Returns once
/// the STARTUPs are sent; the caller watches for the CPU.
///
/// # Safety
///
/// The op's contract (`cpu_start`): `entry` runs on a CPU of its own with
/// `stack`, under `root`, which maps the entry, the stack and the start
/// page at its physical address; `target` runs nothing.
pub unsafe fn start(
    clock_ns: &dyn Fn() -> Nanos,
    target: ApicId,
    entry: u64,
    stack: u64,
    root: Gpa,
    arg: u64,
) -> Result<(), PvError> {
    let platform = platform::get().ok_or_else(|| native(ErrorKind::Unsupported))?;
    let page = platform
        .cpu_start_page()
        .ok_or_else(|| native(ErrorKind::Unsupported))?;
    if !page.is_multiple_of(4096)
        || page >= BELOW
        || root.0 >= 1 << 32
        || !root.0.is_multiple_of(4096)
    {
        return Err(native(ErrorKind::InvalidArgument));
    }
    let at = platform
        .map_gpa(page)
        .ok_or_else(|| native(ErrorKind::Unsupported))?;
    // Only the labels' addresses are taken.
    let (begin, end) = (
        core::ptr::addr_of!(pvi_cpu_start_begin),
        core::ptr::addr_of!(pvi_cpu_start_end),
    );
    let len = end as usize - begin as usize;
    // The start page is the platform's gift for this alone, and no CPU
    // runs it now (the caller starts one CPU at a time, see the op).

    // SAFETY: the image's trampoline bytes into the free, mapped page.
    unsafe { core::ptr::copy_nonoverlapping(begin, at as *mut u8, len) };
    let put32 = |label: &u8, value: u64| {
        // SAFETY: a field of the copied trampoline, inside the page.
        unsafe { ((at + offset(label)) as *mut u32).write_unaligned(value as u32) }
    };
    let put64 = |label: &u8, index: usize, value: u64| {
        // SAFETY: a quadword of the copied block, inside the page.
        unsafe { ((at + offset(label) + 8 * index) as *mut u64).write_unaligned(value) }
    };
    // SAFETY: only the labels' addresses are taken; the trampoline is read-only image data.
    let labels = unsafe {
        (
            &*core::ptr::addr_of!(pvi_cpu_start_gdt),
            &*core::ptr::addr_of!(pvi_cpu_start_gdt_base),
            &*core::ptr::addr_of!(pvi_cpu_start_protected),
            &*core::ptr::addr_of!(pvi_cpu_start_protected_far),
            &*core::ptr::addr_of!(pvi_cpu_start_long),
            &*core::ptr::addr_of!(pvi_cpu_start_long_far),
            &*core::ptr::addr_of!(pvi_cpu_start_block),
        )
    };
    let (gdt, gdt_base, protected, protected_far, long, long_far, block) = labels;
    put32(gdt_base, page + offset(gdt) as u64);
    put32(protected_far, page + offset(protected) as u64);
    put32(long_far, page + offset(long) as u64);
    for (index, value) in [root.0, entry, stack, arg].into_iter().enumerate() {
        put64(block, index, value);
    }
    // The page is complete before the STARTUP that runs it.
    compiler_fence(SeqCst);
    core::sync::atomic::fence(SeqCst);
    let wait = |ns: u64| {
        let until = clock_ns().0.saturating_add(ns);
        while clock_ns().0 < until {
            core::hint::spin_loop();
        }
    };
    // SAFETY: the caller's contract: `target` runs nothing.
    unsafe { super::lapic::send_init(target.0) };
    wait(INIT_WAIT_NS);
    for _ in 0..2 {
        // A CPU already running ignores the second STARTUP.

        // SAFETY: the page holds the trampoline, complete (above).
        unsafe { super::lapic::send_startup(target.0, (page >> 12) as u8) };
        wait(STARTUP_WAIT_NS);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trampoline's bytes, as assembled into this test binary.
    fn bytes() -> &'static [u8] {
        let begin = core::ptr::addr_of!(pvi_cpu_start_begin);
        let end = core::ptr::addr_of!(pvi_cpu_start_end) as usize;
        // SAFETY: `end - begin` bytes of the image's read-only trampoline, never written.
        unsafe { core::slice::from_raw_parts(begin, end - begin as usize) }
    }

    /// Where the code finds each field: the operands the assembler
    /// encoded are the offsets `start` fills, inside one page.
    #[test]
    fn the_code_reads_the_fields_start_fills_all_inside_one_page() {
        let code = bytes();
        assert!(code.len() <= 4096, "{} bytes", code.len());
        // SAFETY: only the labels' addresses are taken.
        let at = |label: *const u8| offset(unsafe { &*label });
        let (gdt, gdt_base, protected_far, long_far, block) = (
            at(core::ptr::addr_of!(pvi_cpu_start_gdt)),
            at(core::ptr::addr_of!(pvi_cpu_start_gdt_base)),
            at(core::ptr::addr_of!(pvi_cpu_start_protected_far)),
            at(core::ptr::addr_of!(pvi_cpu_start_long_far)),
            at(core::ptr::addr_of!(pvi_cpu_start_block)),
        );
        let word = |at: usize| usize::from(u16::from_le_bytes([code[at], code[at + 1]]));
        let long = |at: usize| u32::from_le_bytes(code[at..at + 4].try_into().unwrap()) as usize;
        let find = |pattern: &[u8]| {
            code.windows(pattern.len())
                .position(|w| w == pattern)
                .map(|p| p + pattern.len())
                .unwrap_or_else(|| panic!("no {pattern:02x?} in the trampoline"))
        };
        // lgdt [disp16]: the pointer sits just before the base field.
        assert_eq!(word(find(&[0x0f, 0x01, 0x16])), gdt_base - 2);
        // Its limit covers the four descriptors.
        assert_eq!(word(gdt_base - 2), 4 * 8 - 1);
        assert_eq!(gdt_base - 2, gdt + 32);
        // jmp far [disp16] (16-bit), jmp far [ebx + disp32] (32-bit).
        assert_eq!(word(find(&[0x66, 0xff, 0x2e])), protected_far);
        assert_eq!(long(find(&[0xff, 0xab])), long_far);
        // mov eax, [ebx + disp32]: the root, the block's first quadword.
        assert_eq!(long(find(&[0x8b, 0x83])), block);
        // The far pointers' selectors: 32-bit code, then 64-bit code.
        assert_eq!(word(protected_far + 4), 0x08);
        assert_eq!(word(long_far + 4), 0x18);
        // The block's four quadwords end the trampoline.
        assert_eq!(block % 8, 0);
        assert_eq!(block + 32, code.len());
    }
}
