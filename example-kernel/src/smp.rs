//! Starting the other CPUs the MADT lists (INIT, SIPI, SIPI) and what they
//! do once up: halt until an IPI, and run the boot CPU's requests (read the
//! probe page, for the remote TLB test).
//!
//! A started CPU begins in real mode at `SIPI_VECTOR << 12`. The trampoline
//! copied there enters protected mode, then long mode on the boot page
//! tables, and jumps to `ap_long_mode`, which takes the stack the boot CPU
//! left in `AP_STACK_TOP` and calls [`ap_main`].

use crate::firmware::{Machine, MAX_CPUS};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use pvi_sdk::PvOps;

/// Where the trampoline runs: page 8 (0x8000), low memory that
/// [`trampoline_page_free`] checks against what the PVH loader left there.
pub const TRAMPOLINE: usize = 0x8000;
const SIPI_VECTOR: u8 = (TRAMPOLINE >> 12) as u8;
const AP_STACK_BYTES: usize = 64 * 1024;

core::arch::global_asm!(
    // Copied to TRAMPOLINE, so every address inside is computed relative
    // to it; executed from there, never in place.
    ".section .rodata.ap_trampoline, \"a\"",
    ".balign 16",
    ".global ap_trampoline_start",
    ".global ap_trampoline_end",
    "ap_trampoline_start:",
    ".code16",
    "cli",
    "xor ax, ax",
    "mov ds, ax",
    // lgdt [disp16] (LLVM's memory operands take one symbol, this needs two).
    ".byte 0x0f, 0x01, 0x16",
    ".word ap_gdt_pointer - ap_trampoline_start + 0x8000",
    "mov eax, cr0",
    "or eax, 1",
    "mov cr0, eax",
    // ljmp 0x08:ap_protected (operand-size prefix: a 32-bit offset).
    ".byte 0x66, 0xea",
    ".long ap_protected - ap_trampoline_start + 0x8000",
    ".word 0x08",
    ".code32",
    "ap_protected:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov eax, cr4",
    "or eax, 1 << 5", // PAE
    "mov cr4, eax",
    "mov eax, offset boot_pml4",
    "mov cr3, eax",
    "mov ecx, 0xc0000080", // EFER.LME
    "rdmsr",
    "or eax, 1 << 8",
    "wrmsr",
    "mov eax, cr0",
    "or eax, (1 << 31) | (1 << 16)", // PG, WP: text.rs maps the text read-only
    "mov cr0, eax",
    // ljmp 0x18:ap_long_mode, in the kernel image (below 4 GiB).
    ".byte 0xea",
    ".long ap_long_mode",
    ".word 0x18",
    ".balign 8",
    "ap_gdt:",
    ".quad 0",
    ".quad 0x00cf9a000000ffff", // 0x08: 32-bit code
    ".quad 0x00cf92000000ffff", // 0x10: data
    ".quad 0x00af9a000000ffff", // 0x18: 64-bit code
    "ap_gdt_pointer:",
    ".word ap_gdt_pointer - ap_gdt - 1",
    ".long ap_gdt - ap_trampoline_start + 0x8000",
    "ap_trampoline_end:",
    "",
    ".section .text.ap, \"ax\"",
    ".code64",
    "ap_long_mode:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov rsp, [rip + {stack_top}]",
    "call {main}",
    "2:",
    "cli",
    "hlt",
    "jmp 2b",
    stack_top = sym AP_STACK_TOP,
    main = sym ap_main,
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

#[repr(C, align(16))]
struct Stack([u8; AP_STACK_BYTES]);

/// The started CPUs' stacks (index 0, the boot CPU's, is unused); each is
/// handed to exactly one CPU, which alone uses it.
static mut AP_STACKS: [Stack; MAX_CPUS] = [const { Stack([0; AP_STACK_BYTES]) }; MAX_CPUS];

/// The next CPU's stack top and index, set before its SIPI.
#[no_mangle]
static AP_STACK_TOP: AtomicU64 = AtomicU64::new(0);
static AP_INDEX: AtomicUsize = AtomicUsize::new(0);

/// Which CPUs have come up.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// How often each CPU woke from its idle halt.
static WAKE_UPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// A request from the boot CPU to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Request {
    /// Nothing to do.
    Idle = 0,
    /// Read the probe page into `ANSWER`.
    ReadProbe = 1,
}

static REQUEST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ANSWER: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Whether CPU `cpu` is up.
pub fn online(cpu: usize) -> bool {
    ONLINE.get(cpu).is_some_and(|o| o.load(SeqCst))
}

/// How often CPU `cpu` woke from its idle halt.
pub fn wake_ups(cpu: usize) -> u64 {
    WAKE_UPS[cpu].load(SeqCst)
}

/// Whether the trampoline's page is usable RAM the loader left nothing in.
pub fn trampoline_page_free(info: &crate::start_info::StartInfo) -> bool {
    let page = TRAMPOLINE as u64;
    info.free_ram(page..page + 4096)
}

/// Start every other CPU of `machine`; returns how many came up. Each
/// failure is reported on the console and the CPU left out.
pub fn start_all(machine: &Machine) -> usize {
    let Some(selection) = crate::ops() else {
        return 0;
    };
    let ops = selection.backend;
    let me = crate::apic::id();
    let mut out = crate::console::Console;
    // SAFETY: the trampoline bytes are a static of the image; page 8 is
    // free low RAM (the caller checked `trampoline_page_free`) and
    // identity-mapped; nothing else uses it.
    unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start);
        let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len);
    }
    let mut started = 0;
    for (cpu, &apic_id) in machine.apic_ids[..machine.cpus].iter().enumerate() {
        if apic_id == me || cpu == 0 {
            continue;
        }
        // SAFETY: only this CPU's stack's address is taken.
        let stack = unsafe { core::ptr::addr_of!(AP_STACKS[cpu]) } as u64;
        AP_STACK_TOP.store(stack + AP_STACK_BYTES as u64, SeqCst);
        AP_INDEX.store(cpu, SeqCst);
        crate::apic::send_init(apic_id);
        crate::delay::spin_for(ops, 10_000_000);
        for _ in 0..2 {
            crate::apic::send_startup(apic_id, SIPI_VECTOR);
            crate::delay::spin_for(ops, 200_000);
            if online(cpu) {
                break;
            }
        }
        let give_up = ops.clock_ns().0 + 1_000_000_000;
        while !online(cpu) && ops.clock_ns().0 < give_up {
            core::hint::spin_loop();
        }
        if online(cpu) {
            started += 1;
        } else {
            let _ = writeln!(
                out,
                "smp: CPU {cpu} (APIC id {apic_id}) did not start within 1 s"
            );
        }
    }
    started
}

/// Wake CPU `cpu` (APIC id `apic`) from its idle halt with the kernel's
/// own IPI, for a test whose op under test is not the wake-up: the local
/// APIC's, or on Xen PV (no APIC) the `kick_cpu` op's event channel.
pub fn wake(apic: u32) {
    match crate::platform::entry() {
        crate::platform::Entry::Pvh => {
            let _ = pvi_backends::native::lapic::send_ipi(
                pvi_sdk::types::CpuSet(1 << apic),
                pvi_sdk::types::Vector(crate::platform::KICK_VECTOR),
            );
        }
        crate::platform::Entry::XenPv => crate::backend().kick_cpu(pvi_sdk::types::ApicId(apic)),
    }
}

/// Ask CPU `cpu` to do `request`, wake it with `wake`, and wait (up to
/// 1 s) for its answer.
pub fn ask(cpu: usize, request: Request, wake: impl FnOnce()) -> Option<u64> {
    let ops = crate::ops()?.backend;
    REQUEST[cpu].store(request as u64, SeqCst);
    wake();
    let give_up = ops.clock_ns().0 + 1_000_000_000;
    while REQUEST[cpu].load(SeqCst) != Request::Idle as u64 {
        if ops.clock_ns().0 > give_up {
            REQUEST[cpu].store(Request::Idle as u64, SeqCst);
            return None;
        }
        core::hint::spin_loop();
    }
    Some(ANSWER[cpu].load(SeqCst))
}

/// A started CPU, in Rust: its tables, its APIC, its backend records, then
/// halt until an interrupt, serving requests.
extern "C" fn ap_main() -> ! {
    let cpu = AP_INDEX.load(SeqCst);
    // SAFETY: `cpu` is this CPU's index, given by the boot CPU for it
    // alone; ring 0; once.
    unsafe {
        crate::cpu_local::set(cpu);
        crate::descriptors::load(cpu);
    }
    crate::apic::enable();
    let Some(selection) = crate::ops() else {
        crate::exit::failure()
    };
    if let Err(refused) = selection.init_cpu() {
        // Left out: the boot CPU reports it did not start.
        let _ = writeln!(crate::console::Console, "smp: {refused}");
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }
    serve(cpu)
}

/// A started CPU's life once set up, whichever entry started it: online,
/// then halted until an interrupt, serving the boot CPU's requests.
pub fn serve(cpu: usize) -> ! {
    let ops = crate::backend();
    ops.irq_disable();
    ONLINE[cpu].store(true, SeqCst);
    loop {
        if REQUEST[cpu].load(SeqCst) == Request::ReadProbe as u64 {
            // The boot CPU linked the page before it asked (0: it could not).
            let read = crate::probe_page::ProbePage::get().map_or(0, |probe| probe.read());
            ANSWER[cpu].store(read, SeqCst);
            REQUEST[cpu].store(Request::Idle as u64, SeqCst);
        }
        // sti; hlt: an IPI between the check above and the halt still wakes.
        ops.safe_halt();
        ops.irq_disable();
        WAKE_UPS[cpu].fetch_add(1, SeqCst);
    }
}
