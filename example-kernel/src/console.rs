//! Text output: COM1 set up by the uart_16550 crate, written through the
//! SDK's `console_write` op (so Xen's console hypercall serves it there).

use pvi_sdk::PvOps;

/// Set up COM1 (115200 8N1, FIFOs on), with the crate's self-test.
pub fn init() {
    // SAFETY: COM1 is the kernel's own UART for its whole life.
    let _ = unsafe { uart_16550::Uart16550Tty::new_port(0x3f8, uart_16550::Config::default()) };
}

/// Write without the SDK (before it is set up).
pub fn raw(text: &str) {
    <pvi_backends::native::BareMetal as pvi_sdk::NativeRoutines>::serial_write(text.as_bytes());
}

/// `fmt::Write` through the SDK's console op.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match crate::ops() {
            Some(selection) => selection.backend.console_write(s.as_bytes()),
            None => raw(s),
        }
        Ok(())
    }
}
