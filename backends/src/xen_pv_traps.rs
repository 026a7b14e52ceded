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
//! Exceptions leave the event mask as it is (trap_info flag bit 2 is
//! left clear, as in a trap gate): a mask Xen set on entry would be
//! restored only by the iret hypercall, not by `iretq`.
//!
//! Events arrive otherwise: through the event callback, which Xen enters
//! with the event mask set (and the mask from before saved in the frame,
//! as rflags.IF). The platform's upcall vector's gate becomes that
//! callback, through a second trampoline: it makes the frame the CPU's as
//! above, then pushes a frame of its own under it whose `iretq` returns to
//! a tail of this module. The handler runs as it would for the vector;
//! the tail gives the frame Xen's kernel CS back and jumps to the iret
//! hypercall's slot in the hypercall page, which returns to where the
//! event came and restores the mask from rflags.IF in the same step (Linux
//! xen_iret).
//! Sources: Xen xen/arch/x86/x86_64/entry.S (create_bounce_frame), Linux
//! arch/x86/xen/enlighten_pv.c (cvt_gate_to_trap) and xen-asm.S (the
//! `xen_<name>` stubs that pop rcx and r11).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pvi_sdk::generated::xen_pv::{self as xen, Hypercalls};
use pvi_sdk::types::{callback_register, trap_info, ErrorKind, ErrorOrigin, PvError};

/// Each vector's handler, as its gate names it: where its trampoline jumps.
static HANDLERS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// The upcall vector's handler, which the event callback enters.
static EVENT_HANDLER: AtomicU64 = AtomicU64::new(0);
/// The iret hypercall's slot in the hypercall page.
static IRET_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Where the event callback's return jumps: the iret hypercall's slot in
/// the hypercall page Xen filled (set once, when the backend is built).
pub(crate) fn set_iret_entry(entry: u64) {
    IRET_ENTRY.store(entry, Relaxed);
}

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
    "",
    // The event callback: rcx and r11 restored and the CPU's CS as above
    // (an event has no error code), then a frame for the handler's
    // `iretq` that returns to the tail below with rsp back at Xen's frame.
    ".balign 32",
    "pvi_xen_pv_event_entry:",
    "pop %rcx",
    "pop %r11",
    "movq ${cs}, 8(%rsp)",
    "pushq ${ss}",
    "pushq %rsp",
    "addq $8, (%rsp)",
    "pushfq",
    "pushq ${cs}",
    "pushq pvi_xen_pv_event_tail_address(%rip)",
    "jmp *{event}(%rip)",
    "",
    // Back from the handler, every register as the event found it: Xen's
    // CS for kernel mode (privilege bits clear; 3 would mean a return to
    // user mode), struct iret_context's flags (0), and the iret slot.
    "pvi_xen_pv_event_tail:",
    "movq ${kernel_cs}, 8(%rsp)",
    "pushq $0",
    "jmp *{iret}(%rip)",
    ".popsection",
    ".pushsection .rodata.pvi_xen_pv_traps, \"a\"",
    ".balign 8",
    "pvi_xen_pv_event_tail_address: .quad pvi_xen_pv_event_tail",
    ".popsection",
    cs = const xen::FLAT_KERNEL_CS,
    kernel_cs = const xen::FLAT_KERNEL_CS & !3,
    ss = const xen::FLAT_KERNEL_SS,
    handlers = sym HANDLERS,
    event = sym EVENT_HANDLER,
    iret = sym IRET_ENTRY,
    options(att_syntax),
);

// SAFETY: labels of the global_asm! above, read-only code; only their addresses are taken.
extern "C" {
    static pvi_xen_pv_trampolines: u8;
    static pvi_xen_pv_event_entry: u8;
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
/// `table`, and make the gate of vector `upcall` (the platform's upcall
/// vector), if present, the event callback.
///
/// # Safety
///
/// `trap_table_load`'s contract; Xen is the hypervisor and the kernel
/// its PV guest.
pub unsafe fn load(
    hypercalls: &Hypercalls,
    table: u64,
    entries: u16,
    upcall: Option<u8>,
) -> Result<(), PvError> {
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
    unsafe { send(hypercalls, &mut batch, count) }?;
    let handler = upcall
        .filter(|&v| u16::from(v) < entries)
        .map(|v| HANDLERS[usize::from(v)].load(Relaxed))
        .filter(|&h| h != 0);
    match handler {
        // SAFETY: the upcall vector's handler, which the op's contract
        // vouches for, entered with the CPU's frame.
        Some(handler) => unsafe { register_event_callback(hypercalls, handler) },
        None => Ok(()),
    }
}

/// Make Xen enter `handler`, through the event trampoline, for events.
///
/// # Safety
///
/// `handler` handles the platform's upcall vector with the CPU's frame
/// and returns with `iretq`.
unsafe fn register_event_callback(hypercalls: &Hypercalls, handler: u64) -> Result<(), PvError> {
    if IRET_ENTRY.load(Relaxed) == 0 {
        return Err(xen::unsupported());
    }
    EVENT_HANDLER.store(handler, Relaxed);
    let event = callback_register {
        r#type: xen::CALLBACKTYPE_event,
        address: core::ptr::addr_of!(pvi_xen_pv_event_entry) as u64,
        ..callback_register::ZERO
    };
    // SAFETY: Xen is the hypervisor; the struct lives until the call
    // returns, and the trampoline it names leads to `handler` and back
    // through the iret hypercall.
    unsafe {
        hypercalls
            .hypervisor_callback_op(xen::CALLBACKOP_register, core::ptr::from_ref(&event) as u64)
    }
    .map(|_| ())
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
