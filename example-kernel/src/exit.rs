//! Leaving the machine with a verdict. Under QEMU, isa-debug-exit
//! (`-device isa-debug-exit,iobase=0xf4`) turns a write of v into exit
//! status (v << 1) | 1. Where nothing answers that port (a Xen domU, bare
//! metal), the kernel ends through the `shutdown` op instead: power-off
//! for success, crash for failure, which Xen's toolstack reports as the
//! domain's shutdown reason.

use pvi_sdk::arch::outb;
use pvi_sdk::types::ShutdownReason;
use pvi_sdk::PvOps;

/// Exit value for success: QEMU exits with 33.
pub const SUCCESS: u8 = 0x10;
/// Exit value for failure: QEMU exits with 35.
pub const FAILURE: u8 = 0x11;

fn exit(value: u8, reason: ShutdownReason) -> ! {
    // SAFETY: the isa-debug-exit port; on a machine without it the write is
    // ignored and the kernel goes on below.
    unsafe { outb(0xf4, value) };
    if let Some(selection) = crate::ops() {
        let _ = selection.backend.shutdown(reason);
    }
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
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
