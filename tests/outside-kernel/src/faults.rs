//! The hypercall fix-up opt-in: `#UD`, `#GP` and `#PF` at a hypercall
//! instruction resume at its landing (`pvi_sdk::fixup`), so the op gets
//! "unsupported" and falls back; any other exception is reported and
//! fails the boot.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

/// Hypercalls resumed as "unsupported".
pub static FIXED_UP: AtomicU64 = AtomicU64::new(0);

/// The registers the entry stubs save, then what the CPU pushed.
#[repr(C)]
struct Frame {
    saved: [u64; 9],
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

core::arch::global_asm!(
    ".pushsection .text.faults, \"ax\"",
    "fault_ud:",
    "push 0", // #UD pushes no error code
    "push 6",
    "jmp fault_common",
    "fault_gp:",
    "push 13",
    "jmp fault_common",
    "fault_pf:",
    "push 14",
    "fault_common:",
    // The C ABI's caller-saved registers; the rest the handler keeps.
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "mov rdi, rsp",
    "call {handler}",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    ".popsection",
    handler = sym fault,
);

extern "C" {
    fn fault_ud();
    fn fault_gp();
    fn fault_pf();
}

extern "C" fn fault(frame: &mut Frame) {
    if let Some(landing) = pvi_sdk::fixup::landing(pvi_sdk::fixup::table(), frame.rip as usize) {
        FIXED_UP.fetch_add(1, Relaxed);
        frame.rip = landing as u64;
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let _ = writeln!(
        crate::Console,
        "outside-kernel: exception {} at {:#x}, error {:#x}, cr2 {cr2:#x}",
        frame.vector,
        frame.rip,
        frame.error
    );
    crate::exit(crate::FAILURE);
}

static mut IDT: InterruptDescriptorTable = InterruptDescriptorTable::new();

/// Install the three handlers.
pub fn install() {
    // SAFETY: boot CPU, once, before any exception is expected; the stubs
    // above are interrupt handlers for these vectors (with and without an
    // error code as each vector has), and the IDT is a static.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        idt.invalid_opcode
            .set_handler_addr(VirtAddr::new(fault_ud as *const () as u64));
        idt.general_protection_fault
            .set_handler_addr(VirtAddr::new(fault_gp as *const () as u64));
        idt.page_fault
            .set_handler_addr(VirtAddr::new(fault_pf as *const () as u64));
        idt.load_unsafe();
    }
}
