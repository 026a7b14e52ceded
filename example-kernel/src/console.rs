//! Text output: COM1 set up by the uart_16550 crate, written through the
//! SDK's `console_write` op (so Xen's console hypercall serves it there).
//!
//! Lines written before a backend is chosen go to COM1 and are also kept
//! in a small buffer: where COM1 is not ours (Xen owns it under a PVH dom0
//! and drops our writes; a PVH domU has none), [`replay_early`] writes them
//! again through the chosen backend, so a firmware complaint made before
//! detection is not lost.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};
use pvi_backends::select::Selection;
use pvi_sdk::PvOps;

/// Bytes of early output kept for [`replay_early`].
const EARLY_BYTES: usize = 2048;
static EARLY: [AtomicU8; EARLY_BYTES] = [const { AtomicU8::new(0) }; EARLY_BYTES];
/// Bytes written early, including any beyond [`EARLY_BYTES`] (dropped).
static EARLY_LEN: AtomicUsize = AtomicUsize::new(0);

/// Whether every line also goes to the debug port 0xE9 (`console.e9` on
/// the command line).
static DEBUG_PORT: AtomicBool = AtomicBool::new(false);

/// Copy all output to port 0xE9, which Xen (for its HVM and PVH guests,
/// printed as `(dN) …` lines with `guest_loglvl=all`), QEMU's debugcon and
/// Bochs print. For a backend whose own console cannot reach anyone: the
/// Hyper-V backend in a Xen domU writes to a COM1 that is not there.
pub fn mirror_to_debug_port() {
    DEBUG_PORT.store(true, Relaxed);
}

fn debug_port(bytes: &[u8]) {
    if DEBUG_PORT.load(Relaxed) {
        for &byte in bytes {
            // SAFETY: port 0xE9 is a write-only debug console where one is
            // emulated, and nothing elsewhere; the user asked for it.
            unsafe { pvi_sdk::arch::outb(0xe9, byte) };
        }
    }
}

/// Set up COM1 (115200 8N1, FIFOs on), with the crate's self-test.
pub fn init() {
    // SAFETY: COM1 is the kernel's own UART for its whole life.
    let _ = unsafe { uart_16550::Uart16550Tty::new_port(0x3f8, uart_16550::Config::default()) };
}

/// Write without the SDK (before it is set up), keeping a copy.
pub fn raw(text: &str) {
    let at = EARLY_LEN.fetch_add(text.len(), Relaxed);
    for (i, byte) in text.bytes().enumerate() {
        if let Some(slot) = EARLY.get(at + i) {
            slot.store(byte, Relaxed);
        }
    }
    <pvi_backends::native::BareMetal as pvi_sdk::NativeRoutines>::serial_write(text.as_bytes());
    debug_port(text.as_bytes());
}

/// Write the early lines again through `selection`'s console, if a
/// hypervisor serves it (natively they already reached COM1).
pub fn replay_early(selection: &Selection) {
    let written = EARLY_LEN.load(Relaxed);
    if written == 0
        || selection
            .serving(pvi_sdk::generated::ops::Op::ConsoleWrite)
            .is_none()
    {
        return;
    }
    let kept = written.min(EARLY_BYTES);
    let mut chunk = [0u8; 64];
    selection
        .backend
        .console_write(b"(early lines, before the backend was chosen)\n");
    for start in (0..kept).step_by(chunk.len()) {
        let end = (start + chunk.len()).min(kept);
        for (slot, byte) in chunk.iter_mut().zip(&EARLY[start..end]) {
            *slot = byte.load(Relaxed);
        }
        selection.backend.console_write(&chunk[..end - start]);
    }
    if written > kept {
        let _ = core::fmt::Write::write_fmt(
            &mut Console,
            format_args!("(and {} early bytes more, not kept)\n", written - kept),
        );
    }
}

/// `fmt::Write` through the SDK's console op.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        match crate::ops() {
            Some(selection) => {
                selection.backend.console_write(s.as_bytes());
                debug_port(s.as_bytes());
            }
            None => raw(s),
        }
        Ok(())
    }
}
