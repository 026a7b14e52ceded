//! COM1, the console on bare metal and in every emulator.

use pvi_sdk::arch::{inb, outb};

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 0x20;
/// Polls before dropping a byte on a UART that never drains.
const SPIN_LIMIT: u32 = 100_000;

/// Write `data` to COM1, as it is.
pub fn write(data: &[u8]) {
    for &byte in data {
        let mut spins = 0;
        // SAFETY: COM1's line status and data ports; the kernel owns the UART.
        unsafe {
            while inb(LINE_STATUS) & TRANSMIT_EMPTY == 0 && spins < SPIN_LIMIT {
                spins += 1;
            }
            outb(COM1, byte);
        }
    }
}
