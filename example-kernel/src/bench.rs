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
use pvi_backends::native::BareMetal;
use pvi_backends::select::{Backend, Selection};
use pvi_sdk::PvOps;

/// How many calls a sample times, and how many samples give the median.
#[derive(Clone, Copy)]
struct Plan {
    batch: u64,
    samples: usize,
}

/// Cheap ops: 21 samples of 1,000 calls (21,000 in all).
const HOT: Plan = Plan {
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
fn per_call(plan: Plan, mut f: impl FnMut()) -> u64 {
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

fn report(what: core::fmt::Arguments, centi: u64) {
    let _ = writeln!(
        Console,
        "bench {what} ticks={}.{:02}",
        centi / 100,
        centi % 100
    );
}

/// A backend fixed at compile time with no hypervisor: every op is its
/// generated native lowering (what a kernel built without backends gets).
struct CompiledNative;

impl PvOps for CompiledNative {
    type Native = BareMetal;
}

/// The hot ops through `ops`, whose type is known at compile time.
fn hot_ops<O: PvOps>(ops: &O, form: &str) {
    report(
        format_args!("op=irq_disable form={form}"),
        per_call(HOT, || ops.irq_disable()),
    );
    report(
        format_args!("op=irq_enable form={form}"),
        per_call(HOT, || ops.irq_enable()),
    );
    report(
        format_args!("op=irq_save form={form}"),
        per_call(HOT, || {
            black_box(ops.irq_save());
        }),
    );
    let saved = ops.irq_save();
    report(
        format_args!("op=irq_restore form={form}"),
        per_call(HOT, || ops.irq_restore(saved)),
    );
    ops.irq_disable();
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

/// The same ops as the bare instructions.
fn raw_ops() {
    report(
        format_args!("op=irq_disable form=raw"),
        per_call(HOT, raw_cli),
    );
    report(
        format_args!("op=irq_enable form=raw"),
        per_call(HOT, raw_sti),
    );
    report(
        format_args!("op=irq_save form=raw"),
        per_call(HOT, || {
            black_box(raw_save());
        }),
    );
    let flags = raw_save();
    report(
        format_args!("op=irq_restore form=raw"),
        per_call(HOT, || raw_restore(flags)),
    );
    raw_cli();
}

/// The HPET's main counter, if the HPET answers at its usual address.
fn hpet() -> Option<*const u64> {
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
fn pit_read() -> u16 {
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

/// `irq_disable` and `irq_enable` through patchable sites: as emitted (a
/// call) and after `hot_sites::patch` rewrote them to the instruction.
fn patched_sites(selection: &Selection) {
    let mut disable = || pvi_sdk::patchable_irq_disable!();
    let mut enable = || pvi_sdk::patchable_irq_enable!();
    report(
        format_args!("op=irq_disable form=unpatched"),
        per_call(HOT, &mut disable),
    );
    report(
        format_args!("op=irq_enable form=unpatched"),
        per_call(HOT, &mut enable),
    );
    let rewritten = crate::hot_sites::patch(selection);
    let _ = writeln!(
        Console,
        "bench: {rewritten} of {} call sites rewritten to their instruction",
        crate::hot_sites::sites().len()
    );
    report(
        format_args!("op=irq_disable form=patched"),
        per_call(HOT, &mut disable),
    );
    report(
        format_args!("op=irq_enable form=patched"),
        per_call(HOT, &mut enable),
    );
    raw_cli();
}

/// Run every measurement, then stop with success.
pub fn run(selection: &Selection, machine: &Machine) -> ! {
    let ops = selection.backend;
    ops.irq_disable();
    let _ = writeln!(
        Console,
        "bench: TSC ticks per call, medians (backend {})",
        ops.name()
    );
    raw_ops();
    match ops {
        Backend::Kvm(k) => hot_ops(k, "static"),
        Backend::Xen(x) => hot_ops(x, "static"),
        Backend::Hyperv(h) => hot_ops(h, "static"),
        Backend::Vmware(v) => hot_ops(v, "static"),
        _ => hot_ops(&CompiledNative, "static"),
    }
    hot_ops(ops, "runtime");
    patched_sites(selection);
    clocks(selection, machine);
    let _ = writeln!(Console, "bench: done");
    crate::exit::success()
}
