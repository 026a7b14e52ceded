//! Stopping the machine, and telling an emulator about a panic.

use crate::platform;
use pvi_sdk::arch::{outb, outw};
use pvi_sdk::types::{PvError, ShutdownReason};

/// QEMU's pvpanic ISA device; on bare metal nothing answers the port.
const PVPANIC_PORT: u16 = 0x505;
const PVPANIC_PANICKED: u8 = 1 << 0;

/// Power off, reboot, or stop after a crash. Returns only if it could not.
pub fn shutdown(reason: ShutdownReason) -> Result<(), PvError> {
    let acpi = platform::get().map(|p| p.acpi()).unwrap_or_default();
    match reason {
        ShutdownReason::Poweroff => {
            match (acpi.pm1a_control, acpi.sleep_control) {
                // SAFETY: the PM1a control port from the FADT; SLP_EN
                // (bit 13) with the \_S5 type powers the machine off.
                (Some(port), _) => unsafe { outw(port, acpi.s5_sleep_type << 10 | 1 << 13) },
                (None, Some(port)) => {
                    let value = sleep_control_value(acpi.s5_sleep_type);
                    // SAFETY: the FADT's sleep control register of a
                    // hardware-reduced platform; SLP_EN with the \_S5
                    // type powers the machine off.
                    unsafe { outb(port, value) }
                }
                (None, None) => return Err(PvError::UNSUPPORTED),
            }
            Err(PvError::UNSUPPORTED)
        }
        ShutdownReason::Reboot => {
            // SAFETY: the ACPI reset register from the FADT, then the PCI reset
            // control register (0xcf9) and the keyboard controller (0x64):
            // each resets the machine on the hardware that has it.
            unsafe {
                if let Some((port, value)) = acpi.reset {
                    outb(port, value);
                }
                outb(0xcf9, 0x06);
                outb(0x64, 0xfe);
            }
            Err(PvError::UNSUPPORTED)
        }
        // With interrupts off, `hlt` stops this CPU for good.
        ShutdownReason::Crash => loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        },
    }
}

/// The byte that enters sleep state `sleep_type` through a hardware-reduced
/// platform's sleep control register: SLP_TYP in bits 4:2, SLP_EN (bit 5).
pub fn sleep_control_value(sleep_type: u16) -> u8 {
    ((sleep_type & 7) as u8) << 2 | 1 << 5
}

/// Tell QEMU's pvpanic device (if there is one) that the guest panicked.
pub fn panic_notify() {
    // SAFETY: writing the pvpanic port is harmless where no device answers.
    unsafe { outb(PVPANIC_PORT, PVPANIC_PANICKED) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sleep_control_byte_is_slp_typ_and_slp_en() {
        // QEMU's reduced platform: S5 is 5, written as (5 << 2) | (1 << 5).
        assert_eq!(super::sleep_control_value(5), 0x34);
        assert_eq!(super::sleep_control_value(0xff), 0x3c, "SLP_TYP is 3 bits");
    }
}
