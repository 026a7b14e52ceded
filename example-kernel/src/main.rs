//! The pvi reference kernel: boots in QEMU through PVH and does every
//! paravirtual thing through the pvi SDK, choosing its backend at boot.
//!
//! Command line words: `demo` (the default: the detection report, which
//! backend serves each op, a live clock), `selftest`, `pvi.backend=NAME`.

#![no_std]
#![no_main]

mod boot;
mod console;
mod exit;
mod platform;
mod start_info;

use core::fmt::Write;
use pvi_backends::select::{select, Selection};
use pvi_sdk::detect::detect;
use pvi_sdk::PvOps;

/// The backend, chosen once on the boot CPU.
static SELECTION: spin::Once<Selection> = spin::Once::new();

/// The chosen backend's ops.
pub fn ops() -> Option<&'static Selection> {
    SELECTION.get()
}

/// The kernel's entry from the boot code, with the `hvm_start_info` address.
#[no_mangle]
extern "C" fn kmain(start_info: u32) -> ! {
    console::init();
    // SAFETY: `start_info` is what the PVH loader passed in ebx.
    let Some(info) = (unsafe { start_info::read(start_info) }) else {
        console::raw("pvi: no hvm_start_info (boot through PVH)\n");
        exit::failure();
    };
    pvi_backends::platform::install(&platform::KERNEL);
    let detection = detect(&mut pvi_sdk::arch::Hardware);
    // SAFETY: ring 0, the boot CPU, once, after the platform is installed.
    let selection = SELECTION.call_once(|| unsafe { select(detection, info.cmdline) });
    selection.init_cpu();
    let mut out = console::Console;
    let _ = writeln!(
        out,
        "pvi example kernel, interface {} (fingerprint {:#018x})",
        pvi_sdk::INTERFACE_VERSION,
        pvi_sdk::INTERFACE_FINGERPRINT
    );
    let _ = writeln!(
        out,
        "command line: {:?}; RSDP at {:#x}; {} memory map entries",
        info.cmdline, info.rsdp, info.memmap_entries
    );
    let _ = write!(out, "{selection}");
    demo(selection, &mut out);
    exit::success()
}

/// A live look at the clock: several samples of the monotonic and wall
/// clocks, the TSC frequency and stolen time.
fn demo(selection: &Selection, out: &mut console::Console) {
    let ops = &selection.backend;
    let _ = writeln!(out, "tsc_hz: {} Hz", ops.tsc_hz().0);
    for _ in 0..3 {
        let now = ops.clock_ns();
        let wall = ops.wallclock();
        let _ = writeln!(
            out,
            "clock_ns: {} ns, wallclock: {} s since 1970, steal: {} ns",
            now.0,
            wall.0 / 1_000_000_000,
            ops.steal_ns().0
        );
        let until = now.0 + 10_000_000;
        while ops.clock_ns().0 < until {
            core::hint::spin_loop();
        }
    }
    let fallbacks = pvi_backends::fallback::count();
    let _ = writeln!(out, "fallbacks: {fallbacks}");
    for e in pvi_backends::fallback::recent() {
        let _ = writeln!(out, "  {} step {}: {:?}", e.op, e.step, e.kind);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(console::Console, "panic: {info}");
    if let Some(s) = ops() {
        s.backend.panic_notify();
    }
    exit::failure()
}
