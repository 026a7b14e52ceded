//! The kernel's side of the local APIC: which spurious vector it uses, and
//! the legacy PIC it masks. The registers themselves are driven by the
//! backends' native APIC code (`pvi_backends::native::lapic`), which the
//! SDK's timer, EOI and IPI routines use too.

use pvi_backends::native::lapic;
use pvi_sdk::arch::outb;

pub use lapic::{id, Mode};

/// The spurious-interrupt vector (its low 4 bits must be 1s on old APICs).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Enable this CPU's APIC, in x2APIC mode when the CPU has it.
pub fn enable() -> Option<Mode> {
    lapic::enable(SPURIOUS_VECTOR)
}

/// Mask both 8259 PICs: the PVH entry leaves them as reset, and their
/// vectors would land on exceptions.
pub fn mask_pic() {
    // SAFETY: the PICs' data ports; writing the mask register only masks.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}
