//! Xen PV entry: the same ELF that boots through PVH (boot.rs) carries the
//! notes Xen's loader reads to build a 64-bit PV domain. Xen then starts
//! it in 64-bit mode, in ring 3, on page tables Xen built and validates,
//! with `rsi` pointing at the `start_info` and a hypercall page Xen has
//! filled (`XEN_ELFNOTE_HYPERCALL_PAGE`).
//!
//! The image is linked with virtual = physical addresses (PVH runs
//! identity-mapped), so `VIRT_BASE` and `PADDR_OFFSET` are both 0, as
//! Mini-OS has them.
//!
//! What runs here so far: the entry, a report of what Xen handed over
//! (ring, `start_info`), made through the SDK's generated Xen hypercalls,
//! and the shutdown (`sched_op`). The report goes to Xen's console
//! (`console_io`) from dom0, and through the PV console ring that
//! xenconsoled reads from a domU (a release Xen refuses a domU's
//! `console_io`). The rest of the kernel
//! loads an IDT and GDT, masks interrupts with `cli` and talks to the
//! local APIC: in ring 3 each of these faults, and Xen crashes a PV
//! domain that faults before it has given Xen a trap table. It runs here
//! once those go through ops with a Xen PV mapping (issue 18); until
//! then this entry says so and powers off, and `cargo xtask test` checks
//! every line of it on the real Xen.

use core::fmt::Write;
use pvi_backends::console_ring::{self, Ring};
use pvi_sdk::generated::xen::{
    CONSOLEIO_write, EVTCHNOP_send, Hypercalls, SCHEDOP_shutdown, SCHEDOP_yield, SHUTDOWN_poweroff,
    MACH2PHYS_VIRT_START, SIF_INITDOMAIN, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES,
    XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION, XEN_ELFNOTE_HYPERCALL_PAGE,
    XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};
use pvi_sdk::types::{evtchn_send, sched_shutdown, start_info, xencons_interface};

/// What `start_info.magic` starts with for a 64-bit PV guest.
const MAGIC: &[u8] = b"xen-3.0-x86_64";

core::arch::global_asm!(
    // One ELF note of owner "Xen": its type, then its descriptor.
    ".macro pvi_xen_note type, body:vararg",
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4, 2f - 1f, \\type",
    ".asciz \"Xen\"",
    ".balign 4",
    "1: \\body",
    "2: .balign 4",
    ".popsection",
    ".endm",
    "pvi_xen_note {guest_os}, .asciz \"pvi-example-kernel\"",
    "pvi_xen_note {guest_version}, .asciz \"0.2\"",
    "pvi_xen_note {xen_version}, .asciz \"xen-3.0\"",
    "pvi_xen_note {virt_base}, .quad 0",
    "pvi_xen_note {paddr_offset}, .quad 0",
    "pvi_xen_note {entry}, .quad xen_pv_start",
    "pvi_xen_note {hypercall_page}, .quad xen_pv_hypercall_page",
    "pvi_xen_note {loader}, .asciz \"generic\"",
    // The kernel writes page tables through `page_table_write`, which a
    // PV mapping turns into `mmu_update`: it needs no writable tables.
    "pvi_xen_note {features}, .asciz \"!writable_page_tables\"",
    // Xen writes its stubs here before the entry runs; int3 until then
    // (and for ever under PVH, where nothing calls it).
    ".pushsection pvi_hypercall_pages, \"ax\"",
    ".balign 4096",
    ".global xen_pv_hypercall_page",
    "xen_pv_hypercall_page: .fill 4096, 1, 0xcc",
    ".popsection",
    ".pushsection .text.xen_pv_start, \"ax\"",
    ".global xen_pv_start",
    "xen_pv_start:",
    "lea rsp, [rip + xen_pv_stack_top]",
    "mov rdi, rsi",
    "call xen_pv_main",
    "3: jmp 3b",
    ".popsection",
    ".pushsection .bss.xen_pv_stack, \"aw\", @nobits",
    ".balign 16",
    "xen_pv_stack: .space 64 * 1024",
    "xen_pv_stack_top:",
    ".popsection",
    guest_os = const XEN_ELFNOTE_GUEST_OS,
    guest_version = const XEN_ELFNOTE_GUEST_VERSION,
    xen_version = const XEN_ELFNOTE_XEN_VERSION,
    virt_base = const XEN_ELFNOTE_VIRT_BASE,
    paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    entry = const XEN_ELFNOTE_ENTRY,
    hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
    loader = const XEN_ELFNOTE_LOADER,
    features = const XEN_ELFNOTE_FEATURES,
);

extern "C" {
    static xen_pv_hypercall_page: u8;
}

/// Where the report goes.
enum XenConsole {
    /// Xen's console, through `console_io(CONSOLEIO_write)`: dom0's.
    Hypervisor(Hypercalls),
    /// The PV console ring a domU's toolstack set up, and its event
    /// channel: xenconsoled reads it.
    Ring {
        hypercalls: Hypercalls,
        ring: *mut xencons_interface,
        port: u32,
    },
}

impl XenConsole {
    /// dom0 writes to Xen's console; a domU to its ring, found through
    /// the machine-to-physical table: the image's initial mapping maps
    /// each of its pages at virtual = pseudo-physical address (VIRT_BASE
    /// 0), the console page among them.
    fn for_domain(hypercalls: Hypercalls, info: &start_info) -> XenConsole {
        if info.flags & SIF_INITDOMAIN != 0 || info.console_mfn == 0 {
            return XenConsole::Hypervisor(hypercalls);
        }
        let m2p = MACH2PHYS_VIRT_START as *const u64;
        // SAFETY: Xen maps the machine-to-physical table read-only at
        // MACH2PHYS_VIRT_START for every 64-bit PV guest, one entry per
        // machine frame; the console's frame is one of this domain's.
        let pfn = unsafe { m2p.add(info.console_mfn as usize).read_volatile() };
        XenConsole::Ring {
            hypercalls,
            ring: (pfn << 12) as *mut xencons_interface,
            port: info.console_evtchn,
        }
    }

    /// `f` on the ring's output half, with what lets xenconsoled run.
    fn with_ring<T>(&self, f: impl FnOnce(&Ring, &dyn Fn()) -> T) -> Option<T> {
        let XenConsole::Ring {
            hypercalls,
            ring,
            port,
        } = *self
        else {
            return None;
        };
        let notify = || {
            let mut send = evtchn_send { port };
            // SAFETY: Xen is the hypervisor; a valid evtchn_send for the
            // console's own port, then SCHEDOP_yield, which takes nothing.
            unsafe {
                let _ = hypercalls.hypervisor_event_channel_op(
                    EVTCHNOP_send,
                    core::ptr::from_mut(&mut send) as u64,
                );
                let _ = hypercalls.hypervisor_sched_op(SCHEDOP_yield, 0);
            }
        };
        // SAFETY: the console page the toolstack named, inside the initial
        // mapping, shared with xenconsoled.
        Some(unsafe { console_ring::with_xencons_output(ring, |r| f(r, &notify)) })
    }

    /// Until xenconsoled has read the ring (bounded): the domain is
    /// destroyed once it shuts down, unread lines with it.
    fn drain(&self) {
        let _ = self
            .with_ring(|ring, notify| console_ring::drain(ring, console_ring::STALL_WAITS, notify));
    }
}

impl Write for XenConsole {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if let Some(written) = self.with_ring(|ring, notify| {
            let written =
                console_ring::write(ring, s.as_bytes(), console_ring::STALL_WAITS, notify);
            notify();
            written
        }) {
            return written.map_err(|_| core::fmt::Error);
        }
        let XenConsole::Hypervisor(hypercalls) = self else {
            return Err(core::fmt::Error);
        };
        for chunk in s.as_bytes().chunks(1024) {
            // SAFETY: Xen is the hypervisor (it entered us here);
            // CONSOLEIO_write reads `count` bytes at `buffer`.
            let written = unsafe {
                hypercalls.hypervisor_console_io(
                    CONSOLEIO_write,
                    chunk.len() as u32,
                    chunk.as_ptr() as u64,
                )
            };
            written.map_err(|_| core::fmt::Error)?;
        }
        Ok(())
    }
}

/// The code segment's privilege level: 3 for a 64-bit PV kernel.
fn ring() -> (u16, u16) {
    use x86_64::instructions::segmentation::Segment;
    let cs = x86_64::instructions::segmentation::CS::get_reg().0;
    (cs, cs & 3)
}

/// The text of a NUL-padded byte field.
fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("(not UTF-8)")
}

/// The PV entry's Rust half: report what Xen handed over, then stop.
#[no_mangle]
extern "C" fn xen_pv_main(info: *const start_info) -> ! {
    // SAFETY: Xen filled the page named by XEN_ELFNOTE_HYPERCALL_PAGE
    // before this entry ran, and it stays mapped (it is in the image).
    let hypercalls = unsafe { Hypercalls::new(core::ptr::addr_of!(xen_pv_hypercall_page)) };
    // SAFETY: Xen passes the start_info's virtual address in rsi, mapped
    // read-write inside the initial mapping for as long as the domain
    // does not unmap it; nothing else writes it.
    let info = unsafe { &*info };
    let mut console = XenConsole::for_domain(hypercalls, info);
    let (cs, ring) = ring();
    let _ = writeln!(console, "pvi: Xen PV entry: ring {ring} (CS {cs:#x})");
    if !info.magic.starts_with(MAGIC) {
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: start_info magic {:?} is not {:?}; stopping",
            text(&info.magic),
            text(MAGIC)
        );
    } else {
        let dom0 = info.flags & SIF_INITDOMAIN != 0;
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: start_info {:?}: {} pages, shared_info at machine address {:#x}, {} initial page-table frames, {}",
            text(&info.magic),
            info.nr_pages,
            info.shared_info,
            info.nr_pt_frames,
            if dom0 { "the initial domain (SIF_INITDOMAIN)" } else { "a domU" },
        );
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: command line {:?}",
            text(&info.cmd_line)
        );
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: the kernel stops here: its traps, descriptor tables and interrupt masking need ops with a Xen PV mapping (issue 18); powering off"
        );
    }
    console.drain();
    let reason = sched_shutdown {
        reason: SHUTDOWN_poweroff,
    };
    // SAFETY: SCHEDOP_shutdown reads one sched_shutdown at the address.
    let _ = unsafe {
        hypercalls.hypervisor_sched_op(SCHEDOP_shutdown, core::ptr::addr_of!(reason) as u64)
    };
    // Xen does not return from a successful shutdown.
    loop {
        core::hint::spin_loop();
    }
}
