//! `exits`: how many VM exits each op costs, counted by the host rather
//! than timed, for `cargo xtask bench` to collect:
//!
//! ```text
//! exits key=clock_ns/xen/runtime all=0 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=0
//! exits served key=clock_ns/xen/runtime step=1
//! ```
//!
//! The host (pvi-sim's `--exit-mailbox`, or `pvi-exit-counter` beside
//! QEMU) counts the guest accesses KVM intercepts, by kind, and answers
//! requests through a mailbox in guest memory whose address the command
//! line gives (`exits.mailbox=0x…`):
//!
//! | offset | what                                                    |
//! |--------|---------------------------------------------------------|
//! | 0      | request number, written by the guest                    |
//! | 8      | answered request number, written by the host last       |
//! | 16..80 | the boot vCPU's exits so far: all; port I/O, MMIO, MSR, CPUID and hypercall; how many of them the VMM completed in user space; and the paravirtual EOIs KVM saw completed without one |
//!
//! Where no VMM of ours runs (the real Xen), `exits.markers` replaces the
//! mailbox: each call is bracketed by a CPUID of [`MARK_LEAF`] with the
//! marker's number in the subleaf, which Xen's trace buffers record with
//! every exit, and the kernel prints which markers opened which key's calls
//! (`exits marks key=… at=n,…`). `pvi-xentrace-exits`, in the dom0, counts
//! the exits Xen recorded between each marker and the next and prints the
//! `exits key=…` lines. A Xen PV guest makes no VM exits and its CPUID
//! does not trap: there the marker is a hypercall Xen's PV trace records
//! with its arguments (`xen_pv_entry::trace_marker`), and what is counted
//! is each entry into Xen (hypercall, emulated privileged instruction,
//! fault). A PV guest has no local APIC and no emulated timer hardware,
//! and the native lowering's privileged instructions fault in its ring 3:
//! those rows are skipped there, saying so.
//!
//! The guest waits for an answer by reading memory, which exits to no one,
//! so a reading falls exactly between two of its instructions and the
//! difference of two readings is what the code between them cost. Each
//! figure is the fewest exits over [`REPEATS`] single calls (an interrupt
//! arriving in between is not the op's); `most` shows the most. After a
//! backend's op, a `served` line names the steps of its chain that have
//! answered its calls (`native` where every call fell through).

use crate::bench::CompiledNative;
use crate::console::Console;
use crate::firmware::Machine;
use core::fmt::Write;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use pvi_backends::native::BareMetal;
use pvi_backends::select::Selection;
use pvi_sdk::arch::rdtsc;
use pvi_sdk::generated::ops::Op;
use pvi_sdk::types::{ApicId, CpuSet, Nanos, Vector};
use pvi_sdk::{NativeRoutines, PvOps};

/// Counters a reading carries.
const COUNTERS: usize = 8;
/// What the handler's record holds before it counted an interrupt.
const UNKNOWN: u64 = u64::MAX;
/// Single calls per figure, the fewest exits kept.
const REPEATS: usize = 7;
/// TSC ticks to wait for the host's answer before giving up (seconds on
/// any machine this runs on).
const PATIENCE_TICKS: u64 = 20_000_000_000;

/// The CPUID leaf of a marker (ASCII "PVMK"): no vendor defines it, and
/// Xen answers it with zeros. `pvi-xentrace-exits` looks for the same.
const MARK_LEAF: u32 = 0x5056_4d4b;
/// Whether calls are bracketed by markers (`exits.markers`) rather than
/// counted through the mailbox.
static MARKERS: AtomicBool = AtomicBool::new(false);
/// The last marker's number.
static MARK: AtomicU64 = AtomicU64::new(0);

/// The mailbox's guest-physical (identity-mapped) address; 0 when unset or
/// when the host stopped answering.
static MAILBOX: AtomicU64 = AtomicU64::new(0);
static REQUEST: AtomicU64 = AtomicU64::new(0);

/// The host's counters now, or `None` if no host answers.
fn reading() -> Option<[u64; COUNTERS]> {
    let base = MAILBOX.load(SeqCst) as *mut u64;
    if base.is_null() {
        return None;
    }
    let number = REQUEST.fetch_add(1, SeqCst) + 1;
    // SAFETY: `run` checked that the mailbox's 80 bytes are free RAM the boot code identity-maps; the host writes only its answer words.
    unsafe { base.write_volatile(number) };
    let start = rdtsc();
    loop {
        // SAFETY: as above.
        if unsafe { base.add(1).read_volatile() } == number {
            break;
        }
        if rdtsc().wrapping_sub(start) > PATIENCE_TICKS {
            MAILBOX.store(0, SeqCst);
            let _ = writeln!(
                Console,
                "exits skipped: the host stopped answering the mailbox"
            );
            return None;
        }
    }
    // SAFETY: as above; the host wrote the counters before the answer.
    Some(core::array::from_fn(|i| unsafe {
        base.add(2 + i).read_volatile()
    }))
}

/// What one call cost, or where its markers are.
#[derive(Clone, Copy)]
enum Cost {
    /// The host's counters after less before.
    Counted([u64; COUNTERS]),
    /// The number of the marker before the call (the one after is the next).
    Marked(u64),
}

/// Whether the kernel came in through the Xen PV entry.
fn pv() -> bool {
    crate::platform::entry() == crate::platform::Entry::XenPv
}

/// Execute the next marker, which Xen's trace records with its number: a
/// CPUID exit, or on Xen PV a hypercall.
fn mark() -> u64 {
    let n = MARK.fetch_add(1, SeqCst) + 1;
    if pv() {
        crate::xen_pv_entry::trace_marker(MARK_LEAF, n as u32);
    } else {
        black_box(pvi_sdk::arch::cpuid(MARK_LEAF, n as u32));
    }
    n
}

/// What `f` cost, as the difference of a reading before and after, or
/// between the two markers around it.
fn cost(f: impl FnOnce()) -> Option<Cost> {
    if MARKERS.load(SeqCst) {
        let n = mark();
        f();
        mark();
        return Some(Cost::Marked(n));
    }
    let before = reading()?;
    f();
    let after = reading()?;
    Some(Cost::Counted(core::array::from_fn(|i| {
        after[i].wrapping_sub(before[i])
    })))
}

/// Print which markers opened `key`'s calls.
fn report_marks(key: core::fmt::Arguments, marks: &[u64]) {
    let mut out = Console;
    let _ = write!(out, "exits marks key={key} at=");
    for (i, n) in marks.iter().enumerate() {
        let _ = write!(out, "{}{n}", if i == 0 { "" } else { "," });
    }
    let _ = writeln!(out);
}

/// The cheaper of two costs: the one with fewer exits.
fn fewer(a: Option<[u64; COUNTERS]>, b: [u64; COUNTERS]) -> [u64; COUNTERS] {
    match a {
        Some(a) if a[0] <= b[0] => a,
        _ => b,
    }
}

/// Print one line: the fewest exits by kind, and the most of all kinds.
fn report(key: core::fmt::Arguments, counts: [u64; COUNTERS], most: u64) {
    let mut out = Console;
    let _ = write!(out, "exits key={key} all={}", counts[0]);
    let kinds = [
        "io",
        "mmio",
        "msr",
        "cpuid",
        "hypercall",
        "to_vmm",
        "pv_eoi",
    ];
    for (name, n) in kinds.iter().zip(&counts[1..]) {
        let _ = write!(out, " {name}={n}");
    }
    let _ = writeln!(out, " most={most}");
}

/// Which steps of its chain have answered `op`'s calls (the SDK's served
/// record), as `step=1`, `step=native` (also for an op the backend does
/// not map), or `step=1,native` where calls went both ways: not the step the plan names, since a step that fails
/// call by call without being withdrawn (Hyper-V's reference TSC page
/// with sequence 0) hands every call to the next.
fn report_served(key: core::fmt::Arguments, op: Op) {
    let bits = pvi_backends::served::summary()
        .find(|(name, _)| *name == op.name())
        .map_or(0, |(_, bits)| bits);
    let mut out = Console;
    let _ = write!(out, "exits served key={key} step=");
    let steps = pvi_backends::served::Steps(bits);
    for (i, n) in steps.each().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = match n {
            0 => write!(out, "{comma}native"),
            n => write!(out, "{comma}{n}"),
        };
    }
    if bits == 0 {
        // No chain recorded a call: the op is unmapped, its native lowering.
        let _ = write!(out, "native");
    }
    let _ = writeln!(out);
}

/// The fewest exits of [`REPEATS`] single calls of `f`, reported under
/// `key`.
fn count(key: core::fmt::Arguments, mut f: impl FnMut()) {
    let mut best = None;
    let mut most = 0;
    let mut marks = [0; REPEATS];
    let mut marked = 0;
    for _ in 0..REPEATS {
        match cost(&mut f) {
            Some(Cost::Counted(c)) => {
                most = most.max(c[0]);
                best = Some(fewer(best, c));
            }
            Some(Cost::Marked(n)) => {
                marks[marked] = n;
                marked += 1;
            }
            None => return,
        }
    }
    if marked > 0 {
        report_marks(key, &marks[..marked]);
    } else if let Some(best) = best {
        report(key, best, most);
    }
}

/// The CPUs besides this one, by APIC id, at most three (the bench's IPI
/// and flush targets), and one of them.
fn others(machine: &Machine) -> (CpuSet, Option<ApicId>) {
    let me = crate::platform::apic_id();
    let mut set = 0u64;
    let mut one = None;
    for (cpu, &apic_id) in machine.apic_ids[..machine.cpus].iter().enumerate() {
        if apic_id != me && crate::smp::online(cpu) && set.count_ones() < 3 && apic_id < 64 {
            set |= 1 << apic_id;
            one.get_or_insert(ApicId(apic_id));
        }
    }
    (CpuSet(set), one)
}

/// Every op a kernel calls repeatedly, `calls` times each, through `ops`,
/// reported as `<op>/<name>/<form>`. `skip` says why an op is not run.
fn every_op<O: PvOps>(
    ops: &O,
    name: &str,
    form: &str,
    machine: &Machine,
    skip: &dyn Fn(Op) -> Option<&'static str>,
    report_steps: bool,
) {
    let (targets, other) = others(machine);
    let far = || Nanos(ops.clock_ns().0 + 60_000_000_000);
    let run = |op: Op, f: &mut dyn FnMut()| {
        let label = op.name();
        match skip(op) {
            Some(why) => {
                let _ = writeln!(Console, "exits key={label}/{name}/{form} skipped: {why}");
            }
            None => {
                count(format_args!("{label}/{name}/{form}"), f);
                if report_steps {
                    report_served(format_args!("{label}/{name}/{form}"), op);
                }
            }
        }
    };
    run(Op::IrqDisable, &mut || ops.irq_disable());
    run(Op::IrqEnable, &mut || ops.irq_enable());
    ops.irq_disable();
    run(Op::IrqSave, &mut || {
        black_box(ops.irq_save());
    });
    let flags = ops.irq_save();
    run(Op::IrqRestore, &mut || ops.irq_restore(flags));
    run(Op::IoDelay, &mut || ops.io_delay());
    run(Op::ClockNs, &mut || {
        black_box(ops.clock_ns());
    });
    run(Op::TscHz, &mut || {
        black_box(ops.tsc_hz());
    });
    run(Op::Wallclock, &mut || {
        black_box(ops.wallclock());
    });
    run(Op::StealNs, &mut || {
        black_box(ops.steal_ns());
    });
    run(Op::TimerOneshot, &mut || {
        let _ = ops.timer_oneshot(far());
    });
    run(Op::TimerCancel, &mut || ops.timer_cancel());
    let Some(other) = other else {
        let _ = writeln!(
            Console,
            "exits key=send_ipi/{name}/{form} skipped: no other CPU is online (boot with 4 vCPUs)"
        );
        return;
    };
    let vector = Vector(crate::platform::EXITS_VECTOR);
    if targets.0.count_ones() == 3 {
        run(Op::SendIpi, &mut || {
            let _ = ops.send_ipi(targets, vector);
        });
        run(Op::FlushTlb, &mut || ops.flush_tlb(targets));
    } else {
        let _ = writeln!(
            Console,
            "exits key=send_ipi/{name}/{form} skipped: fewer than 3 other CPUs are online"
        );
    }
    run(Op::KickCpu, &mut || ops.kick_cpu(other));
    run(Op::YieldTo, &mut || ops.yield_to(other));
    run(Op::VcpuIsPreempted, &mut || {
        black_box(ops.vcpu_is_preempted(other));
    });
    run(Op::ConsoleWrite, &mut || ops.console_write(b"."));
    let _ = writeln!(Console);
}

/// The emulated timer hardware a kernel reads without a paravirtual clock,
/// and finds the TSC's frequency with.
fn emulated_clocks(machine: &Machine) {
    count(format_args!("tsc"), || {
        black_box(rdtsc());
    });
    if pv() {
        for key in ["hpet", "pm_timer", "pit", "tsc_discovery"] {
            let _ = writeln!(
                Console,
                "exits key={key} skipped: a Xen PV guest reaches no emulated timer hardware"
            );
        }
        return;
    }
    match crate::bench::hpet() {
        Some(counter) => count(format_args!("hpet"), || {
            // SAFETY: the HPET's main counter, found by `hpet`.
            black_box(unsafe { counter.read_volatile() });
        }),
        None => {
            let _ = writeln!(Console, "exits key=hpet skipped: no HPET at 0xfed00000");
        }
    }
    match machine.pm_timer {
        Some(port) => count(format_args!("pm_timer"), || {
            // SAFETY: the FADT's PM timer port, read-only.
            black_box(unsafe { pvi_sdk::arch::inl(port) });
        }),
        None => {
            let _ = writeln!(
                Console,
                "exits key=pm_timer skipped: the FADT names no PM timer port"
            );
        }
    }
    count(format_args!("pit"), || {
        black_box(crate::bench::pit_read());
    });
    // Bare metal's way to the TSC's frequency, uncached: CPUID 0x15/0x16,
    // else about 10 ms against the PIT.
    count(format_args!("tsc_discovery"), || {
        black_box(pvi_backends::native::tsc::discover());
    });
}

/// How the interrupt handler ends the bench's interrupts, and the fewest
/// exits an end cost.
static EOI_BY_BACKEND: AtomicBool = AtomicBool::new(false);
static EOI_MEASURED: AtomicBool = AtomicBool::new(false);
/// Written only by the boot CPU's handler (`EOI_FEWEST[0]` is
/// [`UNKNOWN`] until an interrupt was counted).
static EOI_FEWEST: [AtomicU64; COUNTERS] = [const { AtomicU64::new(UNKNOWN) }; COUNTERS];
static EOI_MOST: AtomicU64 = AtomicU64::new(0);
static EOI_TAKEN: AtomicU64 = AtomicU64::new(0);
/// With markers: the marker before each counted end, and how many.
static EOI_MARKS: [AtomicU64; REPEATS] = [const { AtomicU64::new(0) }; REPEATS];
static EOI_MARKED: AtomicU64 = AtomicU64::new(0);

/// The handler of `platform::EXITS_VECTOR`: on the boot CPU while
/// measuring, ends the interrupt between two readings.
pub fn interrupt() {
    let by_backend = EOI_BY_BACKEND.load(SeqCst);
    let end = || match (by_backend, crate::ops()) {
        (true, Some(s)) => s.backend.eoi(),
        // An event on Xen PV needs no end, and there is no local APIC.
        _ if pv() => {}
        _ => BareMetal::lapic_eoi(),
    };
    if EOI_MEASURED.load(SeqCst) && crate::cpu_local::index() == 0 {
        match cost(end) {
            Some(Cost::Counted(counts)) => {
                EOI_MOST.fetch_max(counts[0], SeqCst);
                if counts[0] < EOI_FEWEST[0].load(SeqCst) {
                    for (fewest, n) in EOI_FEWEST.iter().zip(counts) {
                        fewest.store(n, SeqCst);
                    }
                }
            }
            Some(Cost::Marked(n)) => {
                let i = EOI_MARKED.fetch_add(1, SeqCst) as usize;
                if let Some(slot) = EOI_MARKS.get(i) {
                    slot.store(n, SeqCst);
                }
            }
            None => {}
        }
    } else {
        end();
    }
    EOI_TAKEN.fetch_add(1, SeqCst);
}

/// End of interrupt with nothing else pending, the backend's against the
/// local APIC's: [`REPEATS`] self-IPIs each, the EOI counted in the
/// handler.
fn eoi(name: &str) {
    if pv() {
        // The op alone: what the event's end costs besides the upcall's
        // return, which is Xen's `iret` hypercall whatever the op does.
        if let Some(s) = crate::ops() {
            count(format_args!("eoi/{name}/runtime"), || s.backend.eoi());
        }
        let _ = writeln!(
            Console,
            "exits key=lapic_eoi skipped: a Xen PV guest has no local APIC"
        );
        return;
    }
    let me = CpuSet(1 << crate::apic::id());
    let mode = match pvi_backends::native::lapic::mode() {
        Some(crate::apic::Mode::X2apic) => "x2apic",
        _ => "xapic",
    };
    for by_backend in [false, true] {
        EOI_BY_BACKEND.store(by_backend, SeqCst);
        EOI_FEWEST[0].store(UNKNOWN, SeqCst);
        EOI_MOST.store(0, SeqCst);
        EOI_MARKED.store(0, SeqCst);
        EOI_MEASURED.store(true, SeqCst);
        let mut delivered = 0;
        for _ in 0..REPEATS {
            let before = EOI_TAKEN.load(SeqCst);
            if BareMetal::lapic_send_ipi(me, Vector(crate::platform::EXITS_VECTOR)).is_err() {
                break;
            }
            x86_64::instructions::interrupts::enable();
            let mut spins = 0u32;
            while EOI_TAKEN.load(SeqCst) == before && spins < 1_000_000 {
                spins += 1;
                core::hint::spin_loop();
            }
            x86_64::instructions::interrupts::disable();
            if EOI_TAKEN.load(SeqCst) != before {
                delivered += 1;
            }
        }
        EOI_MEASURED.store(false, SeqCst);
        let (what, whose, form) = if by_backend {
            ("eoi/", name, "/runtime")
        } else {
            ("lapic_eoi/", mode, "")
        };
        let fewest: [u64; COUNTERS] = core::array::from_fn(|i| EOI_FEWEST[i].load(SeqCst));
        let marked = EOI_MARKED.load(SeqCst) as usize;
        if MARKERS.load(SeqCst) && marked == REPEATS && delivered == REPEATS {
            let marks: [u64; REPEATS] = core::array::from_fn(|i| EOI_MARKS[i].load(SeqCst));
            report_marks(format_args!("{what}{whose}{form}"), &marks);
            continue;
        }
        match fewest[0] {
            all if all != UNKNOWN && delivered == REPEATS => report(
                format_args!("{what}{whose}{form}"),
                fewest,
                EOI_MOST.load(SeqCst),
            ),
            _ => {
                let _ = writeln!(
                    Console,
                    "exits key={what}{whose}{form} skipped: {delivered} of {REPEATS} self-IPIs arrived"
                );
            }
        }
    }
}

/// Count every op's exits through the chosen backend and natively, then
/// the emulated hardware, then stop with success. Ops served by a
/// hypercall are left out under `bench.no-hypercalls`.
///
/// `free_ram` says whether a range of guest-physical memory is RAM nothing
/// uses, for the mailbox (on Xen PV, where only markers work: nothing).
pub fn run(
    selection: &Selection,
    machine: &Machine,
    cmdline: &str,
    free_ram: &dyn Fn(core::ops::Range<u64>) -> bool,
) -> ! {
    let words = || cmdline.split_ascii_whitespace();
    let mailbox = words()
        .find_map(|w| w.strip_prefix("exits.mailbox=0x"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
    match mailbox {
        _ if words().any(|w| w == "exits.markers") => MARKERS.store(true, SeqCst),
        Some(at) if at % 8 == 0 && free_ram(at..at + 80) => MAILBOX.store(at, SeqCst),
        _ => {
            let _ = writeln!(
                Console,
                "exits skipped: no usable exits.mailbox=0x… (8-byte aligned, in free RAM) and no exits.markers on the command line"
            );
            crate::exit::failure()
        }
    }
    let ops = selection.backend;
    ops.irq_disable();
    let name = ops.name();
    let _ = if MARKERS.load(SeqCst) {
        writeln!(
            Console,
            "exits: per op, between markers for the hypervisor's trace (backend {name})"
        )
        .and_then(|()| {
            writeln!(
                Console,
                "exits: each marker is {}",
                if pv() {
                    "a VCPUOP hypercall Xen's PV trace records (a CPUID does not trap here)"
                } else {
                    "a CPUID exit Xen's HVM trace records"
                }
            )
        })
    } else {
        writeln!(
            Console,
            "exits: per op, counted by the host (backend {name})"
        )
    };
    count(format_args!("nothing"), || {});
    let no_hypercalls = words().any(|w| w == "bench.no-hypercalls");
    let skip = |op: Op| {
        let by_hypercall = selection
            .serving(op)
            .is_some_and(|(_, how)| how.starts_with("hypercall"));
        (no_hypercalls && by_hypercall)
            .then_some("served by a hypercall, and hypercalls do not return on this host")
    };
    every_op(ops, name, "runtime", machine, &skip, true);
    if pv() {
        let _ = writeln!(
            Console,
            "exits key=*/native/static skipped: the native lowering's privileged instructions fault in a Xen PV guest's ring 3"
        );
    } else {
        every_op(
            &CompiledNative,
            "native",
            "static",
            machine,
            &|_| None,
            false,
        );
    }
    ops.irq_disable();
    emulated_clocks(machine);
    eoi(name);
    report_served(format_args!("eoi/{name}/runtime"), Op::Eoi);
    let _ = writeln!(Console, "exits: done");
    crate::exit::success()
}
