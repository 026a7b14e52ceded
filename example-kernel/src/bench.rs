//! `bench`: what ops cost, in TSC ticks per call, printed one per line for
//! `cargo xtask bench` to collect:
//!
//! ```text
//! bench op=irq_disable form=raw ticks=1.02
//! bench clock=hpet ticks=5310.40
//! ```
//!
//! Each figure is the median of several samples; a sample times a batch of
//! calls between two serialized TSC reads and subtracts the same batch of
//! an empty loop. The hot ops are timed three ways: the raw instruction,
//! the SDK with the backend fixed at compile time, and the SDK through the
//! backend chosen at run time (`Dispatch`). The clocks: the active
//! backend's `clock_ns`, the bare-metal TSC clock, and the emulated timer
//! hardware a kernel would otherwise read (HPET, ACPI PM timer, PIT).

use crate::console::Console;
use crate::firmware::Machine;
use core::arch::asm;
use core::fmt::Write;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use pvi_backends::native::BareMetal;
use pvi_backends::select::{Backend, Selection};
use pvi_sdk::types::{CpuSet, IrqFlags, Vector};
use pvi_sdk::PvOps;

/// How many calls a sample times, and how many samples give the median.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    batch: u64,
    samples: usize,
}

/// Cheap ops: 21 samples of 1,000 calls (21,000 in all).
pub(crate) const HOT: Plan = Plan {
    batch: 1_000,
    samples: 21,
};
/// Ops that exit to the hypervisor (tens of microseconds each when nested):
/// 11 samples of 1,000 calls.
const SLOW: Plan = Plan {
    batch: 1_000,
    samples: 11,
};

/// The TSC, with loads and stores before it done and none after it begun.
fn serialized_tsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc only order and read; ring 0 may use rdtsc.
    unsafe {
        asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack));
    }
    u64::from(hi) << 32 | u64::from(lo)
}

fn batch_ticks(n: u64, mut f: impl FnMut()) -> u64 {
    let start = serialized_tsc();
    for _ in 0..n {
        f();
        black_box(());
    }
    serialized_tsc().wrapping_sub(start)
}

/// The median cost of one call of `f`, in hundredths of a TSC tick.
pub(crate) fn per_call(plan: Plan, mut f: impl FnMut()) -> u64 {
    let mut samples = [0u64; 21];
    let samples = &mut samples[..plan.samples.min(21)];
    for sample in samples.iter_mut() {
        let empty = batch_ticks(plan.batch, || {});
        let full = batch_ticks(plan.batch, &mut f);
        *sample = full.saturating_sub(empty) * 100 / plan.batch;
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The median cost of one call of each form (hundredths of a tick), the
/// forms measured in turns: each sample times every form once, so that a
/// change in the host's load between samples falls on all of them alike
/// and their ratios stay fair. Each `batch` times `plan.batch` calls with
/// the op inlined into its loop.
fn medians_in_turns<const N: usize>(plan: Plan, batches: [&dyn Fn() -> u64; N]) -> [u64; N] {
    let count = plan.samples.min(21);
    let mut rounds = [[0u64; N]; 21];
    for round in rounds.iter_mut().take(count) {
        for (slot, batch) in round.iter_mut().zip(batches) {
            let empty = batch_ticks(plan.batch, || {});
            let full = batch();
            *slot = full.saturating_sub(empty) * 100 / plan.batch;
        }
    }
    core::array::from_fn(|form| {
        let mut column = [0u64; 21];
        for (value, round) in column.iter_mut().zip(&rounds[..count]) {
            *value = round[form];
        }
        let column = &mut column[..count];
        column.sort_unstable();
        column[count / 2]
    })
}

pub(crate) fn report(what: core::fmt::Arguments, centi: u64) {
    let _ = writeln!(
        Console,
        "bench {what} ticks={}.{:02}",
        centi / 100,
        centi % 100
    );
}

/// A backend fixed at compile time with no hypervisor: every op is its
/// generated native lowering (what a kernel built without backends gets).
pub struct CompiledNative;

impl PvOps for CompiledNative {
    type Native = BareMetal;
}

/// Batches of `n` calls of each hot op through `ops` (`irq_disable`,
/// `irq_enable`, `irq_save`, `irq_restore` restoring `saved`), the op
/// inlined into each batch's loop: one list for both SDK forms.
macro_rules! sdk_batches {
    ($ops:expr, $n:expr, $saved:expr) => {
        [
            &|| batch_ticks($n, || $ops.irq_disable()),
            &|| batch_ticks($n, || $ops.irq_enable()),
            &|| {
                batch_ticks($n, || {
                    black_box($ops.irq_save());
                })
            },
            &|| batch_ticks($n, || $ops.irq_restore($saved)),
        ]
    };
}

/// The hot ops three ways, measured in turns: the raw instruction, the
/// SDK with the backend's type known at compile time (`fixed`), and the
/// SDK through `Dispatch`, the backend chosen at boot (`chosen`). Only the
/// `fixed` batches depend on the type; the rest is [`hot_ops_against`],
/// compiled once rather than once per backend.
fn hot_ops<O: PvOps>(fixed: &O, chosen: &Backend) {
    let n = HOT.batch;
    let saved = chosen.irq_save();
    hot_ops_against(sdk_batches!(fixed, n, saved), chosen, saved);
}

/// [`hot_ops`] given the compile-time form's batches (`irq_disable`,
/// `irq_enable`, `irq_save`, `irq_restore`; `irq_restore` restoring
/// `saved`).
fn hot_ops_against(fixed: [&dyn Fn() -> u64; 4], chosen: &Backend, saved: IrqFlags) {
    let n = HOT.batch;
    let flags = raw_save();
    let raw: [&dyn Fn() -> u64; 4] = [
        &|| batch_ticks(n, raw_cli),
        &|| batch_ticks(n, raw_sti),
        &|| {
            batch_ticks(n, || {
                black_box(raw_save());
            })
        },
        &|| batch_ticks(n, || raw_restore(flags)),
    ];
    let runtime: [&dyn Fn() -> u64; 4] = sdk_batches!(chosen, n, saved);
    let ops = ["irq_disable", "irq_enable", "irq_save", "irq_restore"];
    for (i, op) in ops.iter().enumerate() {
        let ticks = medians_in_turns(HOT, [raw[i], fixed[i], runtime[i]]);
        for (form, centi) in ["raw", "static", "runtime"].iter().zip(ticks) {
            report(format_args!("op={op} form={form}"), centi);
        }
        raw_cli();
    }
}

fn raw_cli() {
    // SAFETY: ring 0; `cli` changes only RFLAGS.IF.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

fn raw_sti() {
    // SAFETY: ring 0; `sti` changes only RFLAGS.IF, and no interrupt source
    // is armed while the bench runs.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

fn raw_save() -> u64 {
    let flags: u64;
    // SAFETY: ring 0; pushfq/pop use our stack, `cli` changes only IF.
    unsafe { asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
    flags
}

fn raw_restore(flags: u64) {
    // SAFETY: ring 0; `flags` came from pushfq, so popfq restores a state
    // this CPU was in.
    unsafe { asm!("push {}", "popfq", in(reg) flags, options(nomem)) }
}

/// The HPET's main counter, if the HPET answers at its usual address.
pub fn hpet() -> Option<*const u64> {
    const HPET: usize = 0xfed0_0000;
    // SAFETY: the boot code identity-maps the low 4 GiB, the HPET's page
    // included; a read of an absent device returns all ones.
    let capabilities = unsafe { (HPET as *const u64).read_volatile() };
    let period_fs = capabilities >> 32;
    if period_fs == 0 || period_fs > 100_000_000 {
        return None;
    }
    // SAFETY: as above; general configuration bit 0 starts the counter.
    unsafe { ((HPET + 0x10) as *mut u64).write_volatile(1) };
    Some((HPET + 0xf0) as *const u64)
}

/// One read of the PIT's channel 0 (latch, then two bytes).
pub fn pit_read() -> u16 {
    // SAFETY: ports 0x43 and 0x40 are the PIT's command port and channel
    // 0; latching the count changes nothing the kernel uses.
    unsafe {
        pvi_sdk::arch::outb(0x43, 0x00);
        let lo = pvi_sdk::arch::inb(0x40);
        let hi = pvi_sdk::arch::inb(0x40);
        u16::from(hi) << 8 | u16::from(lo)
    }
}

fn clocks(selection: &Selection, machine: &Machine) {
    let b = selection.backend;
    report(
        format_args!("clock=backend name={}", b.name()),
        per_call(SLOW, || {
            black_box(b.clock_ns());
        }),
    );
    const READS: u32 = 1000;
    if let Some(attempts) = selection.clock_attempts(READS) {
        let _ = writeln!(
            Console,
            "bench clock=backend attempts={attempts} reads={READS}"
        );
    }
    report(
        format_args!("clock=tsc"),
        per_call(SLOW, || {
            black_box(<BareMetal as pvi_sdk::NativeRoutines>::tsc_clock_ns());
        }),
    );
    match hpet() {
        Some(counter) => report(
            format_args!("clock=hpet"),
            per_call(SLOW, || {
                // SAFETY: the HPET's main counter, found above.
                black_box(unsafe { counter.read_volatile() });
            }),
        ),
        None => {
            let _ = writeln!(Console, "bench clock=hpet skipped: no HPET at 0xfed00000");
        }
    }
    match machine.pm_timer {
        Some(port) => report(
            format_args!("clock=pm_timer"),
            per_call(SLOW, || {
                // SAFETY: the FADT's PM timer port, read-only.
                black_box(unsafe { pvi_sdk::arch::inl(port) });
            }),
        ),
        None => {
            let _ = writeln!(
                Console,
                "bench clock=pm_timer skipped: the FADT names no PM timer port"
            );
        }
    }
    report(
        format_args!("clock=pit"),
        per_call(SLOW, || {
            black_box(pit_read());
        }),
    );
}

/// The shared-structure clock reads themselves, over records this kernel
/// fills (a pvclock record as KVM and Xen write them, a Hyper-V reference
/// TSC page): in a boot that counts instructions (TCG has no hypervisor
/// to fill real ones), what a paravirtual clock read retires.
fn record_clocks() {
    use pvi_sdk::generated::types::{ms_hyperv_tsc_page, pvclock_vcpu_time_info};
    let pvclock = pvclock_vcpu_time_info {
        version: 2,
        tsc_timestamp: 0,
        system_time: 1_000_000,
        tsc_to_system_mul: 0x8000_0000,
        tsc_shift: 1,
        flags: 1,
        ..pvclock_vcpu_time_info::ZERO
    };
    report(
        format_args!("clock=pvclock-record"),
        per_call(SLOW, || {
            // SAFETY: a record on this stack, aligned and alive for the
            // call; nothing writes it meanwhile.
            let now = unsafe { pvi_sdk::time::pvclock::now(&pvclock, pvi_sdk::arch::rdtsc) };
            black_box(now.ok());
        }),
    );
    let mut page = ms_hyperv_tsc_page::ZERO;
    page.tsc_sequence = 1;
    page.tsc_scale = 1 << 62;
    let page = &page;
    report(
        format_args!("clock=reftsc-record"),
        per_call(SLOW, || {
            // SAFETY: a page-sized record, aligned and alive for the call;
            // nothing writes it meanwhile.
            let ticks = unsafe { pvi_sdk::time::reftsc::read(page, pvi_sdk::arch::rdtsc) };
            black_box(ticks.ok().map(pvi_sdk::time::reftsc::to_nanos));
        }),
    );
}

/// The hot ops through patchable sites: as emitted (a call), then after
/// `hot_sites::patch` rewrote them (the native instructions, or for `eoi`
/// a direct call to the backend's routine).
fn patched_sites(selection: &Selection) {
    let mut saved = IrqFlags::empty();
    let forms = |form: &str, saved: &mut IrqFlags| {
        report(
            format_args!("op=irq_disable form={form}"),
            per_call(HOT, || pvi_sdk::patchable_irq_disable!()),
        );
        report(
            format_args!("op=irq_enable form={form}"),
            per_call(HOT, || pvi_sdk::patchable_irq_enable!()),
        );
        raw_cli();
        report(
            format_args!("op=irq_save form={form}"),
            per_call(HOT, || *saved = pvi_sdk::patchable_irq_save!()),
        );
        let flags = *saved;
        report(
            format_args!("op=irq_restore form={form}"),
            per_call(HOT, || pvi_sdk::patchable_irq_restore!(flags)),
        );
        report(
            format_args!("op=eoi form={form}"),
            per_call(HOT, || {
                pvi_sdk::patchable_eoi!(pvi_backends::direct::eoi_dispatched)
            }),
        );
        raw_cli();
    };
    forms("unpatched", &mut saved);
    let applied = crate::hot_sites::patch(selection);
    let _ = writeln!(
        Console,
        "bench: of {} call sites, {} rewritten to native instructions, {} to direct calls, {} kept",
        pvi_sdk::patch::sites().len(),
        applied.native,
        applied.direct,
        applied.kept
    );
    forms("patched", &mut saved);
}

/// What the bench's interrupt handler does between its two TSC reads.
static EOI_FORM: AtomicU8 = AtomicU8::new(EOI_NOTHING);
const EOI_NOTHING: u8 = 0;
const EOI_LAPIC: u8 = 1;
const EOI_BACKEND: u8 = 2;
static EOI_TICKS: AtomicU64 = AtomicU64::new(0);
static BENCH_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// The handler of `platform::BENCH_VECTOR`: times the end of interrupt as
/// `EOI_FORM` says (acknowledging afterwards when it timed nothing).
pub fn interrupt() {
    let form = EOI_FORM.load(SeqCst);
    let start = serialized_tsc();
    match (form, crate::ops()) {
        (EOI_BACKEND, Some(s)) => s.backend.eoi(),
        (EOI_LAPIC, _) => <BareMetal as pvi_sdk::NativeRoutines>::lapic_eoi(),
        _ => {}
    }
    let end = serialized_tsc();
    if form == EOI_NOTHING {
        <BareMetal as pvi_sdk::NativeRoutines>::lapic_eoi();
    }
    EOI_TICKS.store(end.wrapping_sub(start), SeqCst);
    BENCH_INTERRUPTS.fetch_add(1, SeqCst);
}

/// The median ticks the handler measured over 21 self-IPIs with `form`,
/// or `None` if an interrupt did not arrive.
fn eoi_in_handler(form: u8) -> Option<u64> {
    EOI_FORM.store(form, SeqCst);
    let me = CpuSet(1 << crate::apic::id());
    let mut samples = [0u64; 21];
    for sample in samples.iter_mut() {
        let before = BENCH_INTERRUPTS.load(SeqCst);
        <BareMetal as pvi_sdk::NativeRoutines>::lapic_send_ipi(
            me,
            Vector(crate::platform::BENCH_VECTOR),
        )
        .ok()?;
        // SAFETY: the bench vector's handler is installed (traps.rs);
        // interrupts are masked again once it has run, or given up on.
        unsafe { asm!("sti", options(nomem, nostack)) };
        let mut spins = 0u32;
        while BENCH_INTERRUPTS.load(SeqCst) == before && spins < 1_000_000 {
            spins += 1;
            core::hint::spin_loop();
        }
        raw_cli();
        if BENCH_INTERRUPTS.load(SeqCst) == before {
            return None;
        }
        *sample = EOI_TICKS.load(SeqCst) * 100;
    }
    samples.sort_unstable();
    Some(samples[samples.len() / 2])
}

/// End of interrupt, paravirtual against the local APIC's, each timed in
/// the handler of a real interrupt (KVM's PV EOI only skips the exit for
/// an interrupt it injected with the flag set).
fn eoi(selection: &Selection) {
    let Some(nothing) = eoi_in_handler(EOI_NOTHING) else {
        let _ = writeln!(Console, "bench eoi skipped: a self-IPI did not arrive");
        return;
    };
    for (form, name) in [(EOI_LAPIC, "lapic"), (EOI_BACKEND, "backend")] {
        match eoi_in_handler(form) {
            Some(t) => report(
                format_args!("eoi={name} name={}", selection.backend.name()),
                t.saturating_sub(nothing),
            ),
            None => {
                let _ = writeln!(
                    Console,
                    "bench eoi={name} skipped: a self-IPI did not arrive"
                );
            }
        }
    }
    EOI_FORM.store(EOI_NOTHING, SeqCst);
}

/// An IPI to this CPU, through the backend (a PV IPI hypercall under KVM)
/// and through the local APIC's ICR, interrupts masked; the one pending
/// interrupt is taken and acknowledged after.
fn ipi(selection: &Selection, cmdline: &str) {
    let me = CpuSet(1 << crate::apic::id());
    let vector = Vector(crate::platform::BENCH_VECTOR);
    report(
        format_args!("ipi=icr"),
        per_call(SLOW, || {
            let _ = <BareMetal as pvi_sdk::NativeRoutines>::lapic_send_ipi(me, vector);
        }),
    );
    let by_hypercall = selection
        .serving(pvi_sdk::generated::ops::Op::SendIpi)
        .is_some_and(|(_, how)| how.starts_with("hypercall"));
    if by_hypercall
        && cmdline
            .split_ascii_whitespace()
            .any(|w| w == "bench.no-hypercalls")
    {
        let _ = writeln!(
            Console,
            "bench ipi=backend skipped: served by a hypercall, and hypercalls do not return on this host (bench.no-hypercalls)"
        );
    } else {
        report(
            format_args!("ipi=backend name={}", selection.backend.name()),
            per_call(SLOW, || {
                let _ = selection.backend.send_ipi(me, vector);
            }),
        );
    }
    let before = BENCH_INTERRUPTS.load(SeqCst);
    // SAFETY: the bench vector's handler is installed; one pending
    // interrupt is delivered, then interrupts are masked again.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
    let _ = BENCH_INTERRUPTS.load(SeqCst) != before;
}

/// Finding the TSC's frequency: the backend's way (kvmclock's scale, a
/// hypervisor's timing leaf) against bare metal's (CPUID 0x15/0x16, else
/// about 10 ms against the PIT). Five single calls each.
fn tsc_discovery(selection: &Selection) {
    const ONCE: Plan = Plan {
        batch: 1,
        samples: 5,
    };
    report(
        format_args!(
            "discovery=tsc_hz form=backend name={}",
            selection.backend.name()
        ),
        per_call(ONCE, || {
            black_box(selection.backend.tsc_hz());
        }),
    );
    report(
        format_args!("discovery=tsc_hz form=native"),
        per_call(ONCE, || {
            black_box(pvi_backends::native::tsc::discover());
        }),
    );
}

/// The ticks one simple instruction costs in this guest: a chain of 100
/// dependent `add`s. About 1 on hardware; far more means the guest's
/// instructions are being emulated, and every figure here counts
/// instructions rather than exits.
fn calibrate() {
    report(
        format_args!("instruction=add"),
        per_call(HOT, || {
            let mut x = 0u64;
            // SAFETY: register arithmetic only.
            unsafe {
                asm!(".rept 100", "add {0}, 1", ".endr", inout(reg) x, options(nomem, nostack))
            };
            black_box(x);
        }) / 100,
    );
}

/// Run every measurement, then stop with success.
pub fn run(selection: &Selection, machine: &Machine, cmdline: &str) -> ! {
    let ops = selection.backend;
    ops.irq_disable();
    let _ = writeln!(
        Console,
        "bench: TSC ticks per call, medians (backend {})",
        ops.name()
    );
    calibrate();
    // The chosen backend's own type, for the compile-time column: one
    // arm per hypervisor of the IDL.
    macro_rules! hot_ops_of_chosen {
        ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
            match ops {
                $(Backend::$variant(b) => hot_ops(b, ops),)*
                _ => hot_ops(&CompiledNative, ops),
            }
        };
    }
    pvi_sdk::for_each_hypervisor!(hot_ops_of_chosen);
    patched_sites(selection);
    clocks(selection, machine);
    record_clocks();
    eoi(selection);
    ipi(selection, cmdline);
    tsc_discovery(selection);
    let _ = writeln!(Console, "bench: done");
    crate::exit::success()
}
