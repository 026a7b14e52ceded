//! Interrupt and exception entry. Each of the 256 vectors has a 16-byte stub
//! (push a zero where the CPU pushes no error code, push the vector, jump to
//! the common path), which saves the general registers and calls
//! [`dispatch`] with the whole frame. Stable Rust has no `x86-interrupt`
//! ABI; this is its replacement.

use crate::events;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};

core::arch::global_asm!(
    ".section .text.traps, \"ax\"",
    ".balign 16",
    ".global pvi_trap_stubs",
    "pvi_trap_stubs:",
    ".set vector, 0",
    ".rept 256",
    ".balign 16",
    // Vectors 8, 10-14, 17, 21, 29, 30: the CPU pushes an error code.
    ".if (vector - 8) * (vector - 10) * (vector - 11) * (vector - 12) * (vector - 13) * (vector - 14) * (vector - 17) * (vector - 21) * (vector - 29) * (vector - 30)",
    "push 0",
    ".endif",
    "push vector",
    "jmp pvi_trap_common",
    ".set vector, vector + 1",
    ".endr",
    "",
    "pvi_trap_common:",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    // 22 quadwords on a 16-byte aligned interrupt stack: still aligned.
    "mov rdi, rsp",
    "cld",
    "call pvi_trap_dispatch",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
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
);

// SAFETY: the label of the stubs in the global_asm! above; only its address is taken.
extern "C" {
    static pvi_trap_stubs: u8;
}

/// The entry stub of `vector`.
pub fn stub_address(vector: u8) -> u64 {
    core::ptr::addr_of!(pvi_trap_stubs) as u64 + 16 * u64::from(vector)
}

/// The registers as the stubs leave them, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    rbp: u64,
    rbx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    /// Pushed by the stub as a sign-extended byte.
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const NAMES: [&str; 32] = [
    "divide error (#DE)",
    "debug (#DB)",
    "non-maskable interrupt",
    "breakpoint (#BP)",
    "overflow (#OF)",
    "bound range exceeded (#BR)",
    "invalid opcode (#UD)",
    "device not available (#NM)",
    "double fault (#DF)",
    "coprocessor segment overrun",
    "invalid TSS (#TS)",
    "segment not present (#NP)",
    "stack-segment fault (#SS)",
    "general protection (#GP)",
    "page fault (#PF)",
    "reserved 15",
    "x87 floating point (#MF)",
    "alignment check (#AC)",
    "machine check (#MC)",
    "SIMD floating point (#XM)",
    "virtualization (#VE)",
    "control protection (#CP)",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "hypervisor injection (#HV)",
    "VMM communication (#VC)",
    "security (#SX)",
    "reserved 31",
];

/// A fault a self-test provokes on purpose: vector and instruction length.
/// The handler reports it and resumes after the instruction.
static EXPECTED_VECTOR: AtomicU8 = AtomicU8::new(NONE_EXPECTED);
/// No exception is expected (not an exception vector: #DE is 0).
const NONE_EXPECTED: u8 = 0xff;
static EXPECTED_LENGTH: AtomicU8 = AtomicU8::new(0);
/// How many expected faults were caught.
pub static CAUGHT: AtomicU64 = AtomicU64::new(0);
/// The address of the last page fault reported, as `fault_address` said.
pub static LAST_FAULT_ADDRESS: AtomicU64 = AtomicU64::new(0);

/// The faulting address, through the backend's `fault_address` (on Xen
/// PV it is in the vCPU's shared record, not CR2).
fn fault_address() -> u64 {
    use pvi_sdk::PvOps;
    crate::backend().fault_address()
}

/// Let the next `vector` exception skip the `length`-byte instruction that
/// raised it instead of stopping the kernel.
pub fn expect_fault(vector: u8, length: u8) {
    EXPECTED_LENGTH.store(length, SeqCst);
    EXPECTED_VECTOR.store(vector, SeqCst);
}

/// Expect no exception any more: for a test whose instruction did not
/// fault after all.
pub fn expect_none() {
    EXPECTED_VECTOR.store(NONE_EXPECTED, SeqCst);
}

#[no_mangle]
extern "C" fn pvi_trap_dispatch(frame: &mut Frame) {
    let vector = frame.vector as u8;
    match vector {
        // #BP resumes after `int3` by itself.
        3 => {
            events::count(events::Event::Breakpoint);
        }
        0..=31 => {
            if let Some(to) = crate::hypercall_fixups::resume(frame.rip, NAMES[usize::from(vector)])
            {
                frame.rip = to;
                return;
            }
            if vector != 8 && EXPECTED_VECTOR.swap(NONE_EXPECTED, SeqCst) == vector {
                let _ = writeln!(crate::console::Console, "  (expected, the report follows)");
                report(frame);
                frame.rip += u64::from(EXPECTED_LENGTH.load(SeqCst));
                CAUGHT.fetch_add(1, SeqCst);
                return;
            }
            report(frame);
            panic!("unhandled exception {}", NAMES[usize::from(vector)]);
        }
        crate::platform::TIMER_VECTOR => {
            if let Some(s) = crate::ops() {
                s.timer_interrupt();
            }
            events::timer_tick();
            eoi();
        }
        crate::platform::UPCALL_VECTOR => {
            let upcall = crate::ops()
                .map(|s| s.upcall_interrupt())
                .unwrap_or_default();
            if upcall.timer {
                events::timer_tick();
            }
            // IPIs that came as events (Xen PV): each vector's work.
            for vector in upcall.ipis() {
                ipi(vector);
            }
            eoi();
        }
        crate::platform::KICK_VECTOR | crate::platform::FLUSH_VECTOR => {
            ipi(vector);
            eoi();
        }
        crate::platform::BENCH_VECTOR => crate::bench::interrupt(),
        crate::platform::EXITS_VECTOR => crate::exits::interrupt(),
        // The APIC's spurious vector: no EOI.
        crate::apic::SPURIOUS_VECTOR => events::count(events::Event::Spurious),
        _ => {
            events::count(events::Event::Unexpected);
            eoi();
        }
    }
}

/// An IPI's work, by its vector, whether it came as an interrupt or as an
/// event: a kick is counted; a flush request served, then counted.
fn ipi(vector: u8) {
    match vector {
        crate::platform::KICK_VECTOR => events::count(events::Event::Kick),
        crate::platform::FLUSH_VECTOR => {
            pvi_backends::native::flush_ipi_handler();
            events::count(events::Event::Flush);
        }
        _ => events::count(events::Event::Unexpected),
    }
}

/// A patchable site: through the run-time dispatch until
/// `hot_sites::patch` points it at the selected backend's own routine.
fn eoi() {
    pvi_sdk::patchable_eoi!(pvi_backends::direct::eoi_dispatched);
}

/// The exception report: what, where, and every register.
fn report(f: &Frame) {
    let mut out = crate::console::Console;
    let vector = f.vector as u8;
    let _ = writeln!(
        out,
        "exception: {} (vector {vector}), error code {:#x}, CPU {}",
        NAMES[usize::from(vector)],
        f.error,
        pvi_backends::platform::cpu_index()
    );
    if vector == 14 {
        let cr2 = fault_address();
        LAST_FAULT_ADDRESS.store(cr2, SeqCst);
        let _ = writeln!(
            out,
            "  address {cr2:#x}: {} on a {} page, {} mode",
            if f.error & 2 != 0 { "write" } else { "read" },
            if f.error & 1 != 0 {
                "present"
            } else {
                "non-present"
            },
            if f.error & 4 != 0 { "user" } else { "kernel" }
        );
    }
    let _ = writeln!(
        out,
        "  rip {:#018x}  cs {:#06x}  rflags {:#010x}  rsp {:#018x}  ss {:#06x}",
        f.rip, f.cs, f.rflags, f.rsp, f.ss
    );
    let regs = [
        ("rax", f.rax),
        ("rbx", f.rbx),
        ("rcx", f.rcx),
        ("rdx", f.rdx),
        ("rsi", f.rsi),
        ("rdi", f.rdi),
        ("rbp", f.rbp),
        ("r8", f.r8),
        ("r9", f.r9),
        ("r10", f.r10),
        ("r11", f.r11),
        ("r12", f.r12),
        ("r13", f.r13),
        ("r14", f.r14),
        ("r15", f.r15),
    ];
    for row in regs.chunks(4) {
        let _ = write!(out, " ");
        for (name, value) in row {
            let _ = write!(out, " {name:>3} {value:#018x}");
        }
        let _ = writeln!(out);
    }
}
