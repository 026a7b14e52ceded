//! A kernel outside pvi's tree: the book's chapter "Use pvi in your
//! kernel", whole. It boots, installs its `Platform`, lets pvi detect the
//! hypervisor and choose a backend, reads the clock twice, and calls one
//! op that is a hypercall under KVM, which falls back where the host does
//! not take it.

#![no_std]
#![no_main]

mod boot;
mod faults;
mod paging;

use core::fmt::Write;
use pvi_backends::platform::{Platform, Vectors};
use pvi_backends::select::select;
use pvi_sdk::generated::ops::Op;
use pvi_sdk::types::ApicId;
use pvi_sdk::PvOps;
use x86_64::instructions::port::Port;

/// What the backends need to know about this kernel.
struct Kernel;

impl Platform for Kernel {
    fn gpa(&self, addr: usize) -> u64 {
        paging::physical(addr)
    }
    // One CPU here; an SMP kernel returns its per-CPU index.
    fn cpu_index(&self) -> usize {
        0
    }
    fn cpu_of_apic(&self, apic: ApicId) -> Option<usize> {
        (apic.0 == 0).then_some(0)
    }
    fn vectors(&self) -> Vectors {
        Vectors {
            timer: 0x40,
            kick: 0x41,
            flush: 0x42,
            upcall: 0x43,
        }
    }
}

static KERNEL: Kernel = Kernel;

/// COM1, through the uart_16550 crate.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // SAFETY: COM1's ports, which only this kernel's one CPU drives.
        let com1 = unsafe { uart_16550::Uart16550::new_port(0x3f8) };
        let mut com1 = com1.map_err(|_| core::fmt::Error)?;
        com1.send_bytes_exact(s.as_bytes());
        Ok(())
    }
}

/// Success and failure, as QEMU's isa-debug-exit device reports them.
const SUCCESS: u32 = 0x10;
const FAILURE: u32 = 0x11;

fn exit(code: u32) -> ! {
    // SAFETY: the isa-debug-exit port; where there is none the write is
    // ignored and the CPU halts below.
    unsafe { Port::new(0xf4).write(code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[no_mangle]
extern "C" fn kmain(_start_info: u32) -> ! {
    // SAFETY: COM1, set up (115200 8N1) once, before anything is printed.
    let _ = unsafe { uart_16550::Uart16550Tty::new_port(0x3f8, uart_16550::Config::default()) };
    let mut out = Console;
    let half = if cfg!(feature = "higher-half") {
        "higher"
    } else {
        "lower"
    };
    let _ = writeln!(
        out,
        "outside-kernel: running in the {half} half at {:p}",
        kmain as *const ()
    );
    faults::install();
    if cfg!(feature = "higher-half") {
        paging::unmap_low_half();
    }
    paging::protect_text();

    pvi_backends::platform::install(&KERNEL);
    let detection = pvi_sdk::detect::detect(&mut pvi_sdk::arch::Hardware);
    // SAFETY: ring 0, on the boot CPU, once, after `install`.
    let selection = unsafe { select(detection, "") };
    let ops = selection.backend;
    let _ = writeln!(out, "outside-kernel: backend {}", ops.name());
    if let Err(refused) = selection.init_cpu() {
        let _ = writeln!(out, "outside-kernel: init_cpu: {refused}");
        exit(FAILURE);
    }
    let first = ops.clock_ns();
    let second = ops.clock_ns();
    let _ = writeln!(
        out,
        "outside-kernel: clock {} ns, then {} ns",
        first.0, second.0
    );

    // A hypercall under KVM (KVM_HC_SCHED_YIELD); where the host does not
    // take it, the fix-up resumes it as "unsupported" and the chain falls
    // back to the native routine.
    ops.yield_to(ApicId(0));
    let fixed_up = faults::FIXED_UP.load(core::sync::atomic::Ordering::Relaxed);
    let _ = match selection.serving(Op::YieldTo) {
        Some((step, text)) => writeln!(
            out,
            "outside-kernel: yield_to served by step {step}, {text}"
        ),
        None => writeln!(out, "outside-kernel: yield_to served natively"),
    };
    let _ = writeln!(out, "outside-kernel: {fixed_up} hypercall(s) fixed up");
    exit(if second.0 > first.0 { SUCCESS } else { FAILURE })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Console, "outside-kernel: {info}");
    exit(FAILURE)
}
