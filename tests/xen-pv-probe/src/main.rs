//! A 64-bit Xen PV kernel, the least that boots: Xen's ELF notes, a
//! hypercall page Xen fills, an entry that takes `start_info` in `rsi`.
//! It reports its code segment (a PV kernel runs in ring 3) and its
//! `start_info` through `console_io`, then shuts down through `sched_op`.
//! `cargo xtask test` boots it as the real Xen's PV dom0 (step "xen pv
//! dom0: a 64-bit PV kernel in ring 3"). Constants from Xen's
//! `xen/include/public/` (elfnote.h, xen.h, sched.h).

#![no_std]
#![no_main]

/// `__HYPERVISOR_console_io`.
const HYPERVISOR_CONSOLE_IO: usize = 18;
/// `__HYPERVISOR_sched_op`.
const HYPERVISOR_SCHED_OP: usize = 29;
/// `CONSOLEIO_write`.
const CONSOLEIO_WRITE: u64 = 0;
/// `SCHEDOP_shutdown`.
const SCHEDOP_SHUTDOWN: u64 = 2;
/// `SHUTDOWN_poweroff`.
const SHUTDOWN_POWEROFF: u32 = 0;
/// Each hypercall's stub in the page is 32 bytes, in hypercall order.
const HYPERCALL_STUB_BYTES: usize = 32;

core::arch::global_asm!(
    // One ELF note of owner "Xen" (elfnote.h's XEN_ELFNOTE_* types).
    ".macro xen_note type, body:vararg",
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4, 2f - 1f, \\type",
    ".asciz \"Xen\"",
    ".balign 4",
    "1: \\body",
    "2: .balign 4",
    ".popsection",
    ".endm",
    "xen_note 6, .asciz \"pvi\"",                    // GUEST_OS
    "xen_note 7, .asciz \"0.2\"",                    // GUEST_VERSION
    "xen_note 5, .asciz \"xen-3.0\"",                // XEN_VERSION
    "xen_note 3, .quad 0xffffffff80000000",          // VIRT_BASE
    "xen_note 4, .quad 0",                           // PADDR_OFFSET
    "xen_note 1, .quad _start",                      // ENTRY
    "xen_note 2, .quad hypercall_page",              // HYPERCALL_PAGE
    "xen_note 8, .asciz \"generic\"",                // LOADER
    "xen_note 10, .asciz \"!writable_page_tables\"", // FEATURES
    // Xen writes the stubs here; int3 until it does.
    ".pushsection .hypercall_page, \"ax\"",
    ".balign 4096",
    ".global hypercall_page",
    "hypercall_page: .fill 4096, 1, 0xcc",
    ".popsection",
    ".pushsection .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "lea rsp, [rip + boot_stack_top]",
    "mov rdi, rsi", // start_info
    "call probe_main",
    "3: jmp 3b",
    ".popsection",
    ".pushsection .bss.boot_stack, \"aw\", @nobits",
    ".balign 16",
    "boot_stack: .space 16384",
    "boot_stack_top:",
    ".popsection",
);

extern "C" {
    static hypercall_page: u8;
}

/// Hypercall `nr` with three arguments, through Xen's stub for it.
///
/// # Safety
///
/// The arguments must be what hypercall `nr` takes; any pointer among
/// them must be valid for what Xen reads or writes there.
unsafe fn hypercall3(nr: usize, a: u64, b: u64, c: u64) -> i64 {
    let stub = core::ptr::addr_of!(hypercall_page) as usize + nr * HYPERCALL_STUB_BYTES;
    let result: i64;
    // SAFETY: the stub is Xen's, filled in before the entry ran; it
    // clobbers rcx and r11 (syscall) besides the argument registers, and
    // the caller vouches for the arguments.
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") a => _,
            inlateout("rsi") b => _,
            inlateout("rdx") c => _,
            lateout("rax") result,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    result
}

/// `text` on Xen's console.
fn console(text: &[u8]) {
    // SAFETY: CONSOLEIO_write reads `count` bytes at `buffer`.
    unsafe {
        hypercall3(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_WRITE,
            text.len() as u64,
            text.as_ptr() as u64,
        );
    }
}

/// `prefix`, `value` in hexadecimal and a newline on Xen's console.
fn console_hex(prefix: &[u8], value: u64) {
    let mut line = [0u8; 64];
    line[..prefix.len()].copy_from_slice(prefix);
    let mut at = prefix.len();
    line[at..at + 2].copy_from_slice(b"0x");
    at += 2;
    for shift in (0..16).rev() {
        let digit = ((value >> (shift * 4)) & 0xf) as u8;
        line[at] = if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        };
        at += 1;
    }
    line[at] = b'\n';
    console(&line[..=at]);
}

#[no_mangle]
extern "C" fn probe_main(start_info: u64) -> ! {
    console(b"xen-pv-probe: a 64-bit PV kernel\n");
    let cs: u16;
    // SAFETY: reading CS changes nothing.
    unsafe {
        core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags))
    };
    console_hex(b"xen-pv-probe: cs ", u64::from(cs));
    console_hex(b"xen-pv-probe: ring ", u64::from(cs & 3));
    console_hex(b"xen-pv-probe: start_info ", start_info);
    let reason = SHUTDOWN_POWEROFF;
    // SAFETY: SCHEDOP_shutdown reads a `sched_shutdown` (one u32 reason).
    unsafe {
        hypercall3(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_SHUTDOWN,
            core::ptr::addr_of!(reason) as u64,
            0,
        );
    }
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
