//! `trap_table_load` on Xen PV: the kernel's IDT, converted gate by gate
//! into Xen's virtual IDT (set_trap_table), as Linux's xen_load_idt does.
//!
//! Xen does not enter a PV kernel's handler with the CPU's frame. It
//! bounces the exception onto the kernel stack with the interrupted rcx
//! and r11 below the frame, and with the saved CS's privilege bits cleared
//! ("kernel context") and the saved event mask in its bits 32-39.
//! A handler written for the CPU's frame would see the wrong words, and
//! its `iretq` (from ring 3, to a CS of privilege 0) would fault. So each
//! vector's entry in Xen's table is a trampoline of this module: it pops
//! rcx and r11, writes the CS the kernel runs in (FLAT_KERNEL_CS) into the
//! frame and jumps to the gate's handler, which then sees the CPU's frame
//! and whose `iretq` returns kernel to kernel, ring 3 to ring 3.
//!
//! Events stay unmasked on entry (trap_info flag bit 2 is left clear, as
//! in a trap gate): a mask Xen set on entry would be restored only by the
//! iret hypercall, not by `iretq`. No event reaches the kernel through a
//! vector here anyway: events arrive through set_callbacks, which pvi does
//! not map yet.
//! Sources: Xen xen/arch/x86/x86_64/entry.S (create_bounce_frame), Linux
//! arch/x86/xen/enlighten_pv.c (cvt_gate_to_trap) and xen-asm.S (the
//! `xen_<name>` stubs that pop rcx and r11).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pvi_sdk::generated::xen_pv::{self as xen, Hypercalls};
use pvi_sdk::types::{trap_info, ErrorKind, ErrorOrigin, PvError};

/// Each vector's handler, as its gate names it: where its trampoline jumps.
static HANDLERS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

core::arch::global_asm!(
    ".pushsection .text.pvi_xen_pv_traps, \"ax\"",
    ".balign 32",
    "pvi_xen_pv_trampolines:",
    ".set vector, 0",
    ".rept 256",
    ".balign 32",
    "pop %rcx",
    "pop %r11",
    // The vectors for which Xen pushes an error code (X86_EXC_HAVE_EC):
    // the saved CS is one word further up.
    ".if (vector - 8) * (vector - 10) * (vector - 11) * (vector - 12) * (vector - 13) * (vector - 14) * (vector - 17) * (vector - 21) * (vector - 29) * (vector - 30)",
    "movq ${cs}, 8(%rsp)",
    ".else",
    "movq ${cs}, 16(%rsp)",
    ".endif",
    "jmp *({handlers} + 8 * vector)(%rip)",
    ".set vector, vector + 1",
    ".endr",
    ".popsection",
    cs = const xen::FLAT_KERNEL_CS,
    handlers = sym HANDLERS,
    options(att_syntax),
);

extern "C" {
    static pvi_xen_pv_trampolines: u8;
}

/// The trampoline Xen enters for `vector`.
fn trampoline(vector: u8) -> u64 {
    core::ptr::addr_of!(pvi_xen_pv_trampolines) as u64 + 32 * u64::from(vector)
}

/// A present gate of an IDT, as Xen's table needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    /// The handler's address.
    pub handler: u64,
    /// Who may raise the vector with `int n`: the gate's DPL.
    pub privilege: u8,
}

/// A present IDT entry that is neither an interrupt nor a trap gate
/// (which no 64-bit IDT may hold): its attribute byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAGate(pub u8);

/// The gate in the 16 bytes `raw` (as two little-endian words): `None`
/// when it is not present.
pub fn gate(raw: [u64; 2]) -> Result<Option<Gate>, NotAGate> {
    let [low, high] = raw;
    let attributes = (low >> 40) as u8;
    if attributes & 0x80 == 0 {
        return Ok(None);
    }
    if !matches!(attributes & 0x0f, 0x0e | 0x0f) {
        return Err(NotAGate(attributes));
    }
    let handler = low & 0xffff | (low >> 48) << 16 | (high & 0xffff_ffff) << 32;
    Ok(Some(Gate {
        handler,
        privilege: attributes >> 5 & 3,
    }))
}

/// Xen's entry for `vector`, entered at `entry` (the trampoline).
pub fn trap_entry(vector: u8, gate: Gate, entry: u64) -> trap_info {
    trap_info {
        vector,
        flags: gate.privilege,
        cs: xen::FLAT_KERNEL_CS,
        address: entry,
        ..trap_info::ZERO
    }
}

/// How many entries one set_trap_table call carries (its array on the
/// stack, plus the terminating entry).
const BATCH: usize = 32;

/// Replace Xen's virtual IDT for this vCPU by the `entries` gates at
/// `table`.
///
/// # Safety
///
/// `trap_table_load`'s contract; Xen is the hypervisor and the kernel
/// its PV guest.
pub unsafe fn load(hypercalls: &Hypercalls, table: u64, entries: u16) -> Result<(), PvError> {
    crate::native::idt::limit(table, entries).map_err(|_| invalid())?;
    let gates = table as *const [u64; 2];
    // Check every gate before anything changes.
    for vector in 0..usize::from(entries) {
        // SAFETY: the op's contract: `entries` valid gates at `table`.
        let raw = unsafe { gates.add(vector).read_volatile() };
        gate(raw).map_err(|_| invalid())?;
    }
    // SAFETY: a NULL table clears this vCPU's virtual IDT (a vector is
    // entered only from the table the kernel loads next).
    unsafe { hypercalls.hypervisor_set_trap_table(0) }?;
    let mut batch = [trap_info::ZERO; BATCH + 1];
    let mut count = 0;
    for vector in 0..entries {
        // SAFETY: as above.
        let raw = unsafe { gates.add(usize::from(vector)).read_volatile() };
        let Ok(Some(present)) = gate(raw) else {
            continue;
        };
        let vector = vector as u8;
        HANDLERS[usize::from(vector)].store(present.handler, Relaxed);
        batch[count] = trap_entry(vector, present, trampoline(vector));
        count += 1;
        if count == BATCH {
            // SAFETY: see `send`.
            unsafe { send(hypercalls, &mut batch, count) }?;
            count = 0;
        }
    }
    // SAFETY: see `send`.
    unsafe { send(hypercalls, &mut batch, count) }
}

/// Hand the first `count` entries of `batch` to set_trap_table.
///
/// # Safety
///
/// Each entry enters a trampoline of this module whose handler the
/// op's contract vouches for.
unsafe fn send(
    hypercalls: &Hypercalls,
    batch: &mut [trap_info; BATCH + 1],
    count: usize,
) -> Result<(), PvError> {
    if count == 0 {
        return Ok(());
    }
    // The entry after the last is the terminator (address 0).
    batch[count] = trap_info::ZERO;
    // SAFETY: `count` entries and the terminator, alive until the call
    // returns; the caller's contract covers where they lead.
    unsafe { hypercalls.hypervisor_set_trap_table(batch.as_ptr() as u64) }.map(|_| ())
}

fn invalid() -> PvError {
    PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Xen(0))
}
