//! Xen PV's second vCPU, started through the `cpu_start` op as every
//! other CPU is (`smp.rs`): on Xen PV, VCPUOP_initialise then VCPUOP_up.
//! What differs by entry lives here: the PV checks start it early, and it
//! reports what it saw for their `smp_start` line. The vCPU does what the
//! boot vCPU did, through the same ops: its GS base through `gs_base_set`,
//! its IDT through `trap_table_load`, its records through `init_cpu` (Xen
//! moves its vcpu_info into its own block's hypervisor area); it reports
//! its own evidence to the boot vCPU, then serves the boot vCPU's requests
//! as any started CPU does (`smp::serve`).

use crate::xen_pv_checks::{clock_moves, site_irq_disable, upcall_mask};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::SeqCst};
use pvi_backends::entry::xen_pv_vcpu_is_up;
use pvi_backends::registry::Backend;
use pvi_sdk::generated::xen_pv::XEN_ENOENT;
use pvi_sdk::types::{ApicId, ErrorOrigin, Gpa, Nanos, PvError};
use pvi_sdk::PvOps;

/// The vCPU this starts.
const SECOND: usize = 1;

#[repr(C, align(16))]
struct Stack([u8; 64 * 1024]);

/// The second vCPU's stack (its top is 16-byte aligned).
static mut STACK: Stack = Stack([0; 64 * 1024]);

/// What the second vCPU saw, for the boot vCPU to report.
struct Seen {
    done: AtomicBool,
    /// Its GS-relative CPU index.
    index: AtomicU64,
    /// `trap_table_load` and `init_cpu` on it (1: ok).
    idt: AtomicU8,
    init: AtomicU8,
    /// Its own evtchn_upcall_mask after its patched `irq_disable` site,
    /// and the boot vCPU's, before and after.
    own_mask: AtomicU8,
    boot_mask: [AtomicU8; 2],
    /// Its clock_ns (its own vcpu_time_info), twice.
    clock: [AtomicU64; 2],
}

static SEEN: Seen = Seen {
    done: AtomicBool::new(false),
    index: AtomicU64::new(u64::MAX),
    idt: AtomicU8::new(0),
    init: AtomicU8::new(0),
    own_mask: AtomicU8::new(0xff),
    boot_mask: [const { AtomicU8::new(0xff) }; 2],
    clock: [const { AtomicU64::new(0) }; 2],
};

/// The second vCPU, from its first instruction: set up through the ops,
/// look, report, then wait for events for ever.
extern "C" fn second_vcpu_main(cpu: u64) -> ! {
    let (idt, init) = set_up(cpu);
    let cpu = crate::cpu_local::index();
    SEEN.index.store(cpu as u64, SeqCst);
    SEEN.idt.store(u8::from(idt), SeqCst);
    SEEN.init.store(u8::from(init), SeqCst);
    let backend = crate::backend();
    // I/O privilege is per vCPU, as on the boot vCPU.
    backend.io_ports_enable();
    SEEN.boot_mask[0].store(upcall_mask(0), SeqCst);
    site_irq_disable();
    SEEN.own_mask.store(upcall_mask(cpu), SeqCst);
    SEEN.boot_mask[1].store(upcall_mask(0), SeqCst);
    let (first, later) = clock_moves(backend);
    SEEN.clock[0].store(first, SeqCst);
    SEEN.clock[1].store(later, SeqCst);
    SEEN.done.store(true, SeqCst);
    if idt && init {
        // Online for the self-tests, as a CPU started by INIT-SIPI is.
        crate::smp::serve(cpu)
    }
    loop {
        // SCHEDOP_block: nothing is armed, so this vCPU sleeps.
        backend.safe_halt();
    }
}

/// Start vCPU `cpu` at `entry` (given its index) on the stack whose top
/// is `stack`, through the `cpu_start` op.
///
/// # Safety
///
/// vCPU `cpu` is down; the stack is its own, unused by anyone else; the
/// page tables rooted at `root` map the kernel image.
unsafe fn start_vcpu(
    backend: &Backend,
    cpu: usize,
    entry: extern "C" fn(u64) -> !,
    stack: u64,
    root: Gpa,
) -> Result<(), PvError> {
    // SAFETY: the caller's contract, which is cpu_start's.
    unsafe {
        backend.cpu_start(
            ApicId(cpu as u32),
            entry as *const () as u64,
            stack,
            root,
            cpu as u64,
        )
    }
}

/// A started vCPU's first steps, through the ops as on the boot vCPU:
/// its GS-relative index `cpu` (given by the boot vCPU for it alone), its
/// IDT through `trap_table_load`, its records through `init_cpu`; whether
/// the last two took.
fn set_up(cpu: u64) -> (bool, bool) {
    // SAFETY: this vCPU's own index, given by the boot vCPU; once, before GS-relative code.
    unsafe { crate::cpu_local::set(cpu as usize) };
    // SAFETY: this vCPU's own table, loaded before anything can fault.
    let idt = unsafe { crate::descriptors::load_idt() };
    let init = crate::ops().is_some_and(|s| s.init_cpu().is_ok());
    (idt.is_ok(), init)
}

/// What became of the second vCPU.
pub(crate) enum Second {
    /// The domain has one vCPU: Xen's answer for vCPU 1.
    Absent(PvError),
    /// Xen refused to start it, or it never reported (within 2 s of Xen's
    /// time).
    Failed(&'static str),
    /// It ran and reported.
    Ran {
        index: u64,
        idt: bool,
        init: bool,
        own_mask: u8,
        boot_mask: [u8; 2],
        clock: [u64; 2],
    },
}

/// Start vCPU 1, if the domain has one, on the boot vCPU's page tables
/// (rooted at `root`), and wait for its report.
pub(crate) fn start_second(backend: &Backend, root: Gpa) -> Second {
    match xen_pv_vcpu_is_up(backend, SECOND as u32) {
        // Xen's -ENOENT: the domain has no vCPU 1.
        Err(why) if matches!(why.origin, ErrorOrigin::Xen(code) if code.abs() == XEN_ENOENT) => {
            return Second::Absent(why)
        }
        Err(_) => return Second::Failed("VCPUOP_is_up(1) refused, or not the Xen PV backend"),
        Ok(true) => return Second::Failed("vCPU 1 already runs"),
        Ok(false) => {}
    }
    let stack = core::ptr::addr_of!(STACK) as u64 + core::mem::size_of::<Stack>() as u64;
    // SAFETY: entry and stack are vCPU 1's own; the root maps the image; vCPU 1 is down.
    let sent = unsafe { start_vcpu(backend, SECOND, second_vcpu_main, stack, root) };
    if sent.is_err() {
        return Second::Failed("cpu_start (VCPUOP_initialise, VCPUOP_up) refused");
    }
    let until = backend.clock_ns().0 + 2_000_000_000;
    while !SEEN.done.load(SeqCst) && backend.clock_ns() < Nanos(until) {
        core::hint::spin_loop();
    }
    if !SEEN.done.load(SeqCst) {
        return Second::Failed("vCPU 1 did not report within 2 s");
    }
    Second::Ran {
        index: SEEN.index.load(SeqCst),
        idt: SEEN.idt.load(SeqCst) == 1,
        init: SEEN.init.load(SeqCst) == 1,
        own_mask: SEEN.own_mask.load(SeqCst),
        boot_mask: SEEN.boot_mask.each_ref().map(|m| m.load(SeqCst)),
        clock: SEEN.clock.each_ref().map(|c| c.load(SeqCst)),
    }
}

/// The vCPUs [`start_serving`] may start besides the boot one: enough for
/// the `exits` word's IPI to three others.
const SERVING: usize = 3;

/// Their stacks, vCPU n's at n - 1.
static mut SERVING_STACKS: [Stack; SERVING] = [const { Stack([0; 64 * 1024]) }; SERVING];

/// A vCPU [`start_serving`] started: set up through the ops, as the
/// second vCPU is, then online serving the boot vCPU's requests.
extern "C" fn serving_vcpu_main(cpu: u64) -> ! {
    let (idt, init) = set_up(cpu);
    let backend = crate::backend();
    if idt && init {
        crate::smp::serve(cpu as usize)
    }
    loop {
        // SCHEDOP_block: nothing is armed, so this vCPU sleeps offline.
        backend.safe_halt();
    }
}

/// Start every vCPU the domain has up to vCPU [`SERVING`] that is still
/// down, on the boot vCPU's page tables (rooted at `root`), each online
/// within 2 s of Xen's time or reported; returns how many besides the
/// boot vCPU are online. For the `exits` word, which skips the PV checks
/// (and their start of vCPU 1), and for the self-tests after the checks.
pub(crate) fn start_serving(backend: &Backend, root: Gpa) -> usize {
    let mut console = crate::console::Console;
    for cpu in 1..=SERVING {
        match xen_pv_vcpu_is_up(backend, cpu as u32) {
            // Xen's -ENOENT: the domain has no more vCPUs.
            Err(why) if matches!(why.origin, ErrorOrigin::Xen(code) if code.abs() == XEN_ENOENT) => {
                break
            }
            Err(why) => {
                let _ = writeln!(console, "pvi: Xen PV: VCPUOP_is_up({cpu}): {why:?}");
                break;
            }
            Ok(true) => continue,
            Ok(false) => {}
        }
        // The top of vCPU `cpu`'s stack (the `cpu - 1`th), which only it uses.
        let stack = core::ptr::addr_of!(SERVING_STACKS) as u64
            + (cpu * core::mem::size_of::<Stack>()) as u64;
        // SAFETY: entry and stack are vCPU `cpu`'s own; the root maps the image; the vCPU is down.
        let sent = unsafe { start_vcpu(backend, cpu, serving_vcpu_main, stack, root) };
        if let Err(why) = sent {
            let _ = writeln!(console, "pvi: Xen PV: vCPU {cpu} not started: {why:?}");
            break;
        }
        let until = backend.clock_ns().0 + 2_000_000_000;
        while !crate::smp::online(cpu) && backend.clock_ns() < Nanos(until) {
            core::hint::spin_loop();
        }
        if !crate::smp::online(cpu) {
            let _ = writeln!(
                console,
                "pvi: Xen PV: vCPU {cpu} did not come online within 2 s"
            );
            break;
        }
    }
    (1..=SERVING)
        .take_while(|&cpu| crate::smp::online(cpu))
        .count()
}
