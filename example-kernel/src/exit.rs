//! Leaving the machine with a verdict. Under QEMU, isa-debug-exit
//! (`-device isa-debug-exit,iobase=0xf4`) turns a write of v into exit
//! status (v << 1) | 1. Where nothing answers that port (a Xen domU, bare
//! metal, a VMM without the device), the kernel ends through the `shutdown`
//! op instead: power-off for success; for failure, crash where a
//! hypervisor serves `shutdown` (Xen's toolstack reports it as the
//! domain's shutdown reason), else power-off too, the verdict being on the
//! console already. The other CPUs are stopped first, so that where
//! nothing answers the power-off either, the last CPU's halt leaves a
//! hypervisor with no vCPU running (Xen then powers the domain off).

use core::fmt::Write;
use pvi_sdk::arch::outb;
use pvi_sdk::generated::ops::Op;
use pvi_sdk::types::ShutdownReason;
use pvi_sdk::PvOps;

/// Exit value for success: QEMU exits with 33.
pub const SUCCESS: u8 = 0x10;
/// Exit value for failure: QEMU exits with 35.
pub const FAILURE: u8 = 0x11;

/// Whether the kernel runs in ring 3 (a Xen PV guest), where port I/O,
/// `cli` and `hlt` fault.
fn ring_3() -> bool {
    crate::platform::code_segment() & 3 == 3
}

fn exit(value: u8, reason: ShutdownReason) -> ! {
    if !ring_3() {
        // SAFETY: the isa-debug-exit port; on a machine without it the write is ignored and the kernel goes on below.
        unsafe { outb(0xf4, value) };
    }
    if let Some(selection) = crate::ops() {
        // Natively a crash only stops the CPU, and a harness would wait
        // for its timeout: the verdict is on the console already, so power
        // off. A hypervisor that serves `shutdown` reports the reason.
        let reported = selection.serving(Op::Shutdown).is_some();
        let reason = match reason {
            ShutdownReason::Crash if !reported => ShutdownReason::Poweroff,
            other => other,
        };
        // The verdict is on the console; under Xen, let xenconsoled read
        // it before the domain goes.
        let _ = selection.flush_console();
        crate::smp::stop_others();
        let _ = selection.backend.shutdown(reason);
    }
    let _ = writeln!(
        crate::console::Console,
        "exit: no debug-exit device answered and the machine did not power off: halting"
    );
    loop {
        if ring_3() {
            core::hint::spin_loop();
        } else {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }
}

/// Stop with the success code.
pub fn success() -> ! {
    exit(SUCCESS, ShutdownReason::Poweroff)
}

/// Stop with the failure code.
pub fn failure() -> ! {
    exit(FAILURE, ShutdownReason::Crash)
}
