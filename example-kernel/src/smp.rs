//! Starting the other CPUs the MADT lists and what they do once up: halt
//! until an IPI, and run the boot CPU's requests (read the probe page,
//! for the remote TLB test).
//!
//! A CPU is started through the `cpu_start` op: natively INIT and two
//! STARTUPs to the backends' trampoline, which they copy into the start
//! page this kernel names ([`TRAMPOLINE`], `Platform::cpu_start_page`);
//! on Xen PV, VCPUOP_initialise and VCPUOP_up. Either way the CPU arrives
//! at [`ap_main`] in long mode on its own stack, with its index.

use crate::firmware::{Machine, MAX_CPUS};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use pvi_sdk::types::{ApicId, Gpa};
use pvi_sdk::PvOps;

/// The start page: page 8 (0x8000), low memory that
/// [`trampoline_page_free`] checks against what the PVH loader left there.
pub const TRAMPOLINE: usize = 0x8000;
const AP_STACK_BYTES: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; AP_STACK_BYTES]);

/// The started CPUs' stacks (index 0, the boot CPU's, is unused); each is
/// handed to exactly one CPU, which alone uses it.
static mut AP_STACKS: [Stack; MAX_CPUS] = [const { Stack([0; AP_STACK_BYTES]) }; MAX_CPUS];

/// Which CPUs have come up.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// How often each CPU woke from its idle halt.
static WAKE_UPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// A request from the boot CPU to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Request {
    /// Nothing to do.
    Idle = 0,
    /// Read the probe page into `ANSWER`.
    ReadProbe = 1,
    /// Go offline for good: interrupts off, then the `halt` op, which on
    /// a hypervisor takes the vCPU down.
    Stop = 2,
}

static REQUEST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ANSWER: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Whether CPU `cpu` is up.
pub fn online(cpu: usize) -> bool {
    ONLINE.get(cpu).is_some_and(|o| o.load(SeqCst))
}

/// How often CPU `cpu` woke from its idle halt.
pub fn wake_ups(cpu: usize) -> u64 {
    WAKE_UPS[cpu].load(SeqCst)
}

/// Whether the trampoline's page is usable RAM the loader left nothing in.
pub fn trampoline_page_free(info: &crate::start_info::StartInfo) -> bool {
    let page = TRAMPOLINE as u64;
    info.free_ram(page..page + 4096)
}

/// Whether the start page is usable: set once by the boot CPU.
static START_PAGE_FREE: AtomicBool = AtomicBool::new(false);

/// The start page, if the boot CPU found it free RAM.
pub fn start_page() -> Option<u64> {
    START_PAGE_FREE.load(SeqCst).then_some(TRAMPOLINE as u64)
}

/// Start every other CPU of `machine` through `cpu_start`; returns how
/// many came up. Each failure is reported on the console and the CPU left
/// out. The start page must be free (`trampoline_page_free`).
pub fn start_all(machine: &Machine) -> usize {
    let Some(selection) = crate::ops() else {
        return 0;
    };
    START_PAGE_FREE.store(true, SeqCst);
    let me = crate::platform::apic_id();
    let mut started = 0;
    for (cpu, &apic_id) in machine.apic_ids[..machine.cpus].iter().enumerate() {
        if apic_id == me || cpu == 0 {
            continue;
        }
        match start(selection.backend, cpu, apic_id) {
            Ok(()) => started += 1,
            Err(why) => {
                let _ = writeln!(
                    crate::console::Console,
                    "smp: CPU {cpu} (APIC id {apic_id}): {why}"
                );
            }
        }
    }
    started
}

/// Start CPU `cpu` (APIC id `apic`) at [`ap_main`] on its own stack
/// through `cpu_start`, and wait (1 s) for it to come online.
pub fn start(
    ops: &pvi_backends::select::Backend,
    cpu: usize,
    apic: u32,
) -> Result<(), &'static str> {
    if cpu >= MAX_CPUS {
        return Err("beyond the kernel's CPUs");
    }
    // SAFETY: only this CPU's stack's address is taken.
    let stack = unsafe { core::ptr::addr_of!(AP_STACKS[cpu]) } as u64 + AP_STACK_BYTES as u64;
    // The boot root maps the kernel, every stack and the low 4 GiB, the
    // start page among them (identity-mapped).

    // SAFETY: `ap_main` suits a CPU of its own, on this CPU's stack; the CPU is not started.
    let sent = unsafe {
        ops.cpu_start(
            ApicId(apic),
            ap_main as *const () as u64,
            stack,
            Gpa(crate::boot_tables::root()),
            cpu as u64,
        )
    };
    sent.map_err(|_| "cpu_start refused")?;
    let give_up = ops.clock_ns().0 + 1_000_000_000;
    while !online(cpu) && ops.clock_ns().0 < give_up {
        core::hint::spin_loop();
    }
    if online(cpu) {
        Ok(())
    } else {
        Err("did not start within 1 s")
    }
}

/// Wake CPU `cpu` (APIC id `apic`) from its idle halt with the kernel's
/// own IPI, for a test whose op under test is not the wake-up: the local
/// APIC's, or on Xen PV (no APIC) the `kick_cpu` op's event channel.
pub fn wake(apic: u32) {
    match crate::platform::entry() {
        crate::platform::Entry::Pvh => {
            let _ = pvi_backends::native::lapic::send_ipi(
                pvi_sdk::types::CpuSet(1 << apic),
                pvi_sdk::types::Vector(crate::platform::KICK_VECTOR),
            );
        }
        crate::platform::Entry::XenPv => crate::backend().kick_cpu(pvi_sdk::types::ApicId(apic)),
    }
}

/// Ask CPU `cpu` to do `request`, wake it with `wake`, and wait (up to
/// 1 s) for its answer.
pub fn ask(cpu: usize, request: Request, wake: impl FnOnce()) -> Option<u64> {
    let ops = crate::ops()?.backend;
    REQUEST[cpu].store(request as u64, SeqCst);
    wake();
    let give_up = ops.clock_ns().0 + 1_000_000_000;
    while REQUEST[cpu].load(SeqCst) != Request::Idle as u64 {
        if ops.clock_ns().0 > give_up {
            REQUEST[cpu].store(Request::Idle as u64, SeqCst);
            return None;
        }
        core::hint::spin_loop();
    }
    Some(ANSWER[cpu].load(SeqCst))
}

/// TSC ticks to wait, in all, for the other CPUs to acknowledge
/// [`stop_others`] (a second or less at the TSC rates of these machines):
/// bounded by the TSC, not `clock_ns`, which a failing run may have found
/// broken.
const STOP_PATIENCE_TICKS: u64 = 1_000_000_000;

/// Stop every other online CPU for good, as Linux's `stop_other_cpus`
/// does before a power-off, and wait (bounded) for them to go offline.
/// Where `shutdown` is native and nothing answers its power-off register
/// (a Xen PVH domU's FADT names a PM1 block nothing there emulates), the
/// halt that follows then leaves every vCPU down, which Xen takes as the
/// domain's power-off; with another CPU idling in `serve`, the domain
/// would stay.
pub fn stop_others() {
    let Some(machine) = crate::platform::machine() else {
        return;
    };
    let me = crate::cpu_local::index_if_set().unwrap_or(0);
    // A CPU whose APIC id a CpuSet cannot name (64 and up) is left idle:
    // no IPI of the kernel's own reaches it.
    let running = || {
        (0..machine.cpus).filter(move |&cpu| cpu != me && online(cpu) && machine.apic_ids[cpu] < 64)
    };
    for cpu in running() {
        REQUEST[cpu].store(Request::Stop as u64, SeqCst);
        wake(machine.apic_ids[cpu]);
    }
    let start = pvi_sdk::arch::rdtsc();
    while running().next().is_some()
        && pvi_sdk::arch::rdtsc().wrapping_sub(start) < STOP_PATIENCE_TICKS
    {
        core::hint::spin_loop();
    }
}

/// A started CPU, from its first instruction after the start-up code:
/// its tables, its APIC, its backend records, then halt until an
/// interrupt, serving requests.
extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    // SAFETY: `cpu` is this CPU's index, given by the boot CPU for it alone; ring 0; once.
    unsafe {
        crate::cpu_local::set(cpu);
        crate::descriptors::load(cpu);
    }
    crate::apic::enable();
    let Some(selection) = crate::ops() else {
        crate::exit::failure()
    };
    if let Err(refused) = selection.init_cpu() {
        // Left out: the boot CPU reports it did not start.
        let _ = writeln!(crate::console::Console, "smp: {refused}");
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }
    serve(cpu)
}

/// A started CPU's life once set up, whichever entry started it: online,
/// then halted until an interrupt, serving the boot CPU's requests.
pub fn serve(cpu: usize) -> ! {
    let ops = crate::backend();
    ops.irq_disable();
    ONLINE[cpu].store(true, SeqCst);
    loop {
        if REQUEST[cpu].load(SeqCst) == Request::Stop as u64 {
            ONLINE[cpu].store(false, SeqCst);
            loop {
                ops.halt();
            }
        }
        if REQUEST[cpu].load(SeqCst) == Request::ReadProbe as u64 {
            // The boot CPU linked the page before it asked (0: it could not).
            let read = crate::probe_page::ProbePage::get().map_or(0, |probe| probe.read());
            ANSWER[cpu].store(read, SeqCst);
            REQUEST[cpu].store(Request::Idle as u64, SeqCst);
        }
        // sti; hlt: an IPI between the check above and the halt still wakes.
        ops.safe_halt();
        ops.irq_disable();
        WAKE_UPS[cpu].fetch_add(1, SeqCst);
    }
}
