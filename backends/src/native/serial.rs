//! COM1, the console on bare metal and in every emulator, through the
//! uart_16550 crate. The kernel sets the UART up (uart_16550's
//! `Uart16550Tty`, or its firmware); this only sends.

const COM1: u16 = 0x3f8;
/// Polls before dropping a byte on a UART that never drains.
const SPIN_LIMIT: u32 = 100_000;

/// Write `data` to COM1, as it is; a byte the UART does not take within
/// [`SPIN_LIMIT`] polls is dropped, so a dead UART cannot hang the caller.
pub fn write(data: &[u8]) {
    // SAFETY: COM1's eight ports; the kernel owns the UART.
    let Ok(mut com1) = (unsafe { uart_16550::Uart16550::new_port(COM1) }) else {
        return;
    };
    for &byte in data {
        let mut spins = 0;
        while com1.try_send_byte(byte).is_err() && spins < SPIN_LIMIT {
            spins += 1;
        }
    }
}
