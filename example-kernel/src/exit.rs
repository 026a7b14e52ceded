//! Leaving QEMU: isa-debug-exit (`-device isa-debug-exit,iobase=0xf4`)
//! turns a write of v into exit status (v << 1) | 1.

use pvi_sdk::arch::outb;

/// Exit value for success: QEMU exits with 33.
pub const SUCCESS: u8 = 0x10;
/// Exit value for failure: QEMU exits with 35.
pub const FAILURE: u8 = 0x11;

fn exit(value: u8) -> ! {
    // SAFETY: the isa-debug-exit port; on a machine without it the write is
    // ignored and the CPU halts below.
    unsafe { outb(0xf4, value) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Stop with the success code.
pub fn success() -> ! {
    exit(SUCCESS)
}

/// Stop with the failure code.
pub fn failure() -> ! {
    exit(FAILURE)
}
