//! The pvi reference kernel: boots in QEMU through PVH (and enters as a
//! Xen PV guest through `xen_pv_entry`, so far to report and stop) and does every
//! paravirtual thing through the pvi SDK, choosing its backend at boot.
//!
//! Command line words: `demo` (the default: the detection report, which
//! backend serves each op, a live clock), `selftest`, `bench`, `exits`
//! (with `exits.mailbox=0x…`), `panic`,
//! `reboot`, `pvi.backend=NAME`, `pvi.withdraw=OP:STEP`.

#![no_std]
#![no_main]

mod apic;
mod bench;
mod boot;
mod boot_tables;
mod console;
mod cpu_local;
mod delay;
mod descriptors;
mod events;
mod exit;
mod exits;
mod firmware;
mod hot_sites;
mod hypercall_fixups;
mod platform;
mod probe_page;
mod run_report;
mod selftest;
mod smp;
mod start_info;
mod text;
mod traps;
mod xen_pv_bench;
mod xen_pv_checks;
mod xen_pv_entry;
mod xen_pv_smp;

use core::fmt::Write;
use pvi_backends::select::{select, Selection};
use pvi_sdk::detect::detect;
use pvi_sdk::PvOps;

/// The backend, chosen once on the boot CPU.
static SELECTION: spin::Once<Selection> = spin::Once::new();

// `.note.pvi`: the interface this kernel was built for, its fingerprint and
// the backends linked, for `pvi inspect` (linker.ld keeps the section).
pvi_sdk::guest_note!(backends: pvi_backends::select::COMPILED_IN);

/// Choose and build the backend for `detection` and `cmdline`, once,
/// whichever entry the kernel came through: every later `ops()` and the
/// console see it.
///
/// # Safety
///
/// As [`select`]'s: the kernel's privilege, the boot CPU, once, after the
/// platform is installed.
pub unsafe fn select_once(
    detection: pvi_sdk::detect::Detection,
    cmdline: &str,
) -> &'static Selection {
    // SAFETY: the caller's contract, which is `select`'s.
    SELECTION.call_once(|| unsafe { select(detection, cmdline) })
}

/// The chosen backend's ops.
pub fn ops() -> Option<&'static Selection> {
    SELECTION.get()
}

/// The chosen backend, or bare metal before one is chosen: for code that
/// may run either side of detection (a fault report, the probe page).
pub fn backend() -> &'static pvi_backends::select::Backend {
    static NATIVE: pvi_backends::select::Backend = pvi_backends::select::Backend::Native;
    ops().map_or(&NATIVE, |s| s.backend)
}

/// The kernel's entry from the boot code, with the `hvm_start_info` address.
#[no_mangle]
extern "C" fn kmain(start_info: u32) -> ! {
    console::init();
    platform::set_entry(platform::Entry::Pvh);
    // SAFETY: `start_info` is what the PVH loader passed in ebx.
    let Some(mut info) = (unsafe { start_info::read(start_info) }) else {
        console::raw("pvi: no hvm_start_info (boot through PVH)\n");
        exit::failure();
    };
    if info
        .cmdline
        .split_ascii_whitespace()
        .any(|w| w == "console.e9")
    {
        console::mirror_to_debug_port();
    }
    // SAFETY: ring 0, the boot CPU (index 0), once.
    unsafe {
        cpu_local::set(0);
        descriptors::load(0);
    }
    // SAFETY: once, on the boot CPU, before the others start, on boot.rs's
    // page tables.
    if let Err(why) = unsafe { text::protect() } {
        let _ = writeln!(console::Console, "pvi: kernel text left writable: {why}");
    }
    // The backends' APIC code finds the xAPIC page through the platform.
    pvi_backends::platform::install(&platform::KERNEL);
    apic::mask_pic();
    let apic_mode = apic::enable();
    // SAFETY: the RSDP address from `hvm_start_info`, below 4 GiB.
    let machine = match unsafe { firmware::read(info.rsdp) } {
        Ok(machine) => machine,
        Err(e) => {
            let _ = writeln!(
                console::Console,
                "pvi: ACPI tables unreadable ({e:?}): one CPU, no ACPI power-off"
            );
            let mut machine = firmware::Machine::default();
            machine.apic_ids[0] = apic::id();
            machine.cpus = 1;
            machine
        }
    };
    let machine = platform::set_machine(machine);
    let detection = detect(&mut pvi_sdk::arch::Hardware);
    // SAFETY: ring 0, the boot CPU, once, after the platform is installed.
    let selection = unsafe { select_once(detection, info.cmdline) };
    if let Err(refused) = selection.init_cpu() {
        // The boot CPU is CPU 0: this cannot happen unless the platform's
        // numbering is broken, and then no op can be trusted.
        let _ = writeln!(console::Console, "boot CPU: {refused}");
        exit::failure()
    }
    // Ring 0 reaches every port already; the op says so (nothing).
    selection.backend.io_ports_enable();
    console::replay_early(selection);
    let adopted = adopt_memory_map(selection, &mut info);
    let timer = selection.check_timer();
    let mut out = console::Console;
    let _ = writeln!(
        out,
        "pvi example kernel, interface {} (fingerprint {:#018x})",
        pvi_sdk::INTERFACE_VERSION,
        pvi_sdk::INTERFACE_FINGERPRINT
    );
    let _ = writeln!(
        out,
        "command line: {:?}; RSDP at {:#x}; {} memory map entries",
        info.cmdline, info.rsdp, info.memmap_entries,
    );
    match adopted {
        Some(Ok(n)) => {
            let _ = writeln!(
                out,
                "memory map: none from the loader; {n} entries from XENMEM_memory_map"
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(
                out,
                "memory map: none from the loader, and XENMEM_memory_map failed ({e:?})"
            );
        }
        None => {}
    }
    let _ = write!(
        out,
        "CPUs: {} (APIC ids {:?}{}), local APIC in {} mode; power-off: ",
        machine.cpus,
        &machine.apic_ids[..machine.cpus],
        if machine.cpus_ignored > 0 {
            ", more ignored"
        } else {
            ""
        },
        match apic_mode {
            Some(apic::Mode::X2apic) => "x2APIC",
            Some(apic::Mode::Xapic(_)) => "xAPIC",
            None => "no (unreachable)",
        },
    );
    let _ = match (machine.power.pm1a_control, machine.power.sleep_control) {
        (Some(port), _) => writeln!(
            out,
            "PM1a {port:#x}, SLP_TYP {}",
            machine.power.s5_sleep_type
        ),
        (None, Some(port)) => writeln!(
            out,
            "hardware-reduced ACPI: sleep control register {port:#x}, SLP_TYP {}",
            machine.power.s5_sleep_type
        ),
        (None, None) => writeln!(out, "no PM1a control block or sleep control register found"),
    };
    if let Some(found) = machine.root_repaired {
        let _ = writeln!(
            out,
            "ACPI: the XSDT's signature reads {found:02x?}, not \"XSDT\" (Xen 4.17 builds a PVH dom0's XSDT so on a host with only an RSDT); its length and checksum hold, so its entries are used"
        );
    }
    let _ = write!(out, "{selection}");
    let _ = writeln!(out, "{timer}");
    let words = || info.cmdline.split_ascii_whitespace();
    // The bench times the call sites before and after patching them.
    if !words().any(|w| w == "bench") {
        let applied = hot_sites::patch(selection);
        let _ = writeln!(
            out,
            "patch: {} call sites rewritten to native instructions, {} to direct calls, {} kept",
            applied.native, applied.direct, applied.kept
        );
    }
    if machine.cpus > 1 {
        if smp::trampoline_page_free(&info) {
            let started = smp::start_all(machine);
            let _ = writeln!(out, "smp: {} of {} CPUs online", started + 1, machine.cpus);
        } else {
            let _ = writeln!(
                out,
                "smp: page {:#x} is not free RAM here; staying on one CPU",
                smp::TRAMPOLINE
            );
        }
    }
    if words().any(|w| w == "selftest") {
        selftest::run(selection, machine, info.cmdline)
    }
    if words().any(|w| w == "bench") {
        bench::run(selection, machine, info.cmdline)
    }
    if words().any(|w| w == "exits") {
        exits::run(selection, machine, info.cmdline, &|range| {
            info.free_ram(range)
        })
    }
    if words().any(|w| w == "hypercall-probe") {
        selftest::hypercall_probe(selection)
    }
    if words().any(|w| w == "panic") {
        panic_on_purpose(selection)
    }
    if words().any(|w| w == "reboot") {
        reboot(selection)
    }
    demo(selection, &mut out);
    power_off(selection)
}

/// The memory map from the hypervisor when the loader gave none (Xen 4.17
/// gives a PVH dom0 a version-0 `hvm_start_info`, without one): `None`
/// when there was no need to ask or nobody to ask.
fn adopt_memory_map(
    selection: &Selection,
    info: &mut start_info::StartInfo,
) -> Option<Result<usize, pvi_sdk::types::PvError>> {
    if info.memmap_entries > 0 {
        return None;
    }
    let written = selection.memory_map(info.map_buffer())?;
    if let Ok(n) = written {
        info.adopt_map(n);
    }
    Some(written)
}

/// The clean end of the demo: the `shutdown` op (ACPI S5 natively), and
/// the failure code if the machine is still running.
fn power_off(selection: &Selection) -> ! {
    end_through_shutdown(
        selection,
        pvi_sdk::types::ShutdownReason::Poweroff,
        "powering off",
    )
}

/// Say what is coming, call `shutdown` with `reason`, and fail the run if
/// the machine is still running a second later.
fn end_through_shutdown(
    selection: &Selection,
    reason: pvi_sdk::types::ShutdownReason,
    doing: &str,
) -> ! {
    let _ = writeln!(console::Console, "shutdown: {doing}");
    let result = selection.backend.shutdown(reason);
    // The emulator acts on the PM1a write after the vCPU moves on: give it
    // a second before calling the power-off failed.
    delay::spin_for(selection.backend, 1_000_000_000);
    let _ = writeln!(console::Console, "shutdown: still running ({result:?})");
    exit::failure()
}

/// `reboot`: the `shutdown` op with the reboot reason, which a Xen domU's
/// toolstack reports as reason 1. Where nothing reboots the machine (QEMU's
/// PVH boot has no reset path the op knows), the run fails after a second.
fn reboot(selection: &Selection) -> ! {
    end_through_shutdown(
        selection,
        pvi_sdk::types::ShutdownReason::Reboot,
        "rebooting",
    )
}

/// `panic`: tell the hypervisor through `panic_notify`; QEMU (run with
/// `-action panic=exit-failure`) stops here with status 1.
fn panic_on_purpose(selection: &Selection) -> ! {
    let _ = writeln!(console::Console, "panic_notify: telling the hypervisor");
    selection.backend.panic_notify();
    // Give an asynchronous device a moment before declaring it absent.
    delay::spin_for(selection.backend, 500_000_000);
    let _ = writeln!(console::Console, "panic_notify: nobody stopped the machine");
    exit::failure()
}

/// A live look at the clock: five timer ticks 100 ms apart, the CPU halted
/// in between, each showing the monotonic and wall clocks and stolen time.
fn demo(selection: &Selection, out: &mut console::Console) {
    let ops = &selection.backend;
    let _ = writeln!(out, "tsc_hz: {} Hz", ops.tsc_hz().0);
    let start = ops.clock_ns().0;
    for tick in 1..=5u64 {
        let deadline = start + tick * 100_000_000;
        let before = events::seen(0, events::Event::Timer);
        let armed = ops.timer_oneshot(pvi_sdk::types::Nanos(deadline));
        ops.irq_disable();
        // Halt until the tick (safe_halt: no wake-up lost between the check
        // and the halt); spin if the timer could not be armed.
        while events::seen(0, events::Event::Timer) == before {
            if armed.is_ok() {
                ops.safe_halt();
                ops.irq_disable();
            } else if ops.clock_ns().0 >= deadline {
                break;
            }
        }
        let now = ops.clock_ns().0;
        let _ = writeln!(
            out,
            "tick {tick}: clock_ns {now} ({} us after the deadline{}), wallclock {} s since 1970, steal {} ns",
            now.saturating_sub(deadline) / 1_000,
            if armed.is_ok() { "" } else { ", timer unavailable: polled" },
            ops.wallclock().0 / 1_000_000_000,
            ops.steal_ns().0
        );
    }
    run_report::write(out);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    static PANICKED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    let _ = writeln!(console::Console, "panic: {info}");
    // A panic inside the panic path (a fault in the notification) goes
    // straight to the exit, which tries only the `shutdown` op.
    if !PANICKED.swap(true, core::sync::atomic::Ordering::SeqCst) {
        if let Some(s) = ops() {
            s.backend.panic_notify();
        }
    }
    exit::failure()
}
