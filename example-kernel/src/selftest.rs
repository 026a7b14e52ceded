//! `selftest`: every op the chosen backend serves, each checked against
//! evidence that does not come from the op itself (RFLAGS, the TSC, the
//! CMOS clock that QEMU drives from the host's time, interrupts counted by
//! the handlers, a page mapping that changes). One line per test, then
//! `N passed, M failed, K skipped`, then the isa-debug-exit code.

use crate::events::{self, Event};
use crate::firmware::Machine;
use crate::platform::{KICK_VECTOR, TIMER_VECTOR};
use core::fmt::{self, Write};
use pvi_backends::select::{Backend, Selection};
use pvi_sdk::arch::{inb, outb, rdtsc};
use pvi_sdk::generated::ops::Op;
use pvi_sdk::types::{ApicId, CpuSet, IrqFlags, Nanos, Vector};
use pvi_sdk::PvOps;

const MS: u64 = 1_000_000;
/// How late a timer interrupt may be. TCG runs the guest in a host thread
/// that may be descheduled; 20 ms covers that with room.
const TIMER_LATE_NS: u64 = 20 * MS;
/// How early: the deadline is converted from the clock to TSC ticks with
/// integer arithmetic, so allow a few microseconds.
const TIMER_EARLY_NS: u64 = 50_000;

/// A test's one-line verdict.
enum Outcome {
    Pass(Text),
    Fail(Text),
    Skip(Text),
}

/// A fixed-size line (no allocator in this kernel).
struct Text {
    bytes: [u8; 200],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Text {
            bytes: [0; 200],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("(unprintable)")
    }
}

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep whole characters only; a long line is cut, not broken.
        for c in s.chars() {
            let mut buf = [0; 4];
            let enc = c.encode_utf8(&mut buf).as_bytes();
            if self.len + enc.len() > self.bytes.len() {
                break;
            }
            self.bytes[self.len..self.len + enc.len()].copy_from_slice(enc);
            self.len += enc.len();
        }
        Ok(())
    }
}

fn text(args: fmt::Arguments) -> Text {
    let mut t = Text::new();
    let _ = t.write_fmt(args);
    t
}

macro_rules! pass { ($($a:tt)*) => { Outcome::Pass(text(format_args!($($a)*))) } }
macro_rules! fail { ($($a:tt)*) => { Outcome::Fail(text(format_args!($($a)*))) } }
macro_rules! skip { ($($a:tt)*) => { Outcome::Skip(text(format_args!($($a)*))) } }

/// What every test gets.
struct Context<'a> {
    selection: &'a Selection,
    ops: &'static Backend,
    machine: &'a Machine,
    cmdline: &'a str,
    /// `clock_ns` when the self-tests started.
    started: u64,
}

impl Context<'_> {
    /// Why `op` must not be called here, if it must not: the boot matrix
    /// found that hypercalls never return on this host (nested KVM) and
    /// said so with `selftest.no-hypercalls`.
    fn hypercall_blocked(&self, op: Op) -> Option<Text> {
        let (step, how) = self.selection.planned(op)?;
        let blocked = how.starts_with("hypercall")
            && self
                .cmdline
                .split_ascii_whitespace()
                .any(|w| w == "selftest.no-hypercalls");
        blocked.then(|| {
            text(format_args!(
                "served by a hypercall (step {step}), and hypercalls do not return on this host (selftest.no-hypercalls)"
            ))
        })
    }

    fn now(&self) -> u64 {
        self.ops.clock_ns().0
    }

    fn spin_until(&self, at: u64) {
        while self.now() < at {
            core::hint::spin_loop();
        }
    }

    /// Wait with interrupts enabled until this CPU's timer count passes
    /// `before` or the clock passes `give_up`; the arrival time if it came.
    fn wait_for_tick(&self, before: u64, give_up: u64) -> Option<u64> {
        while events::seen(0, Event::Timer) == before {
            if self.now() > give_up {
                return None;
            }
            core::hint::spin_loop();
        }
        Some(events::last_tick_at(0))
    }
}

type Test = fn(&Context) -> Outcome;

/// The tests, each named after the op (or the kernel part) it checks.
const TESTS: &[(&str, Test)] = &[
    ("idt: ud2", invalid_opcode),
    ("init_cpu: each CPU's own record", own_records),
    ("fault_address (idt: page fault)", page_fault),
    ("text: read-only", text_read_only),
    ("irq_disable irq_enable", irq_disable_enable),
    ("irq_save irq_restore", irq_save_restore),
    ("clock_ns vs TSC", clock_vs_tsc),
    ("clock_ns vs CMOS RTC", clock_vs_rtc),
    ("tsc_hz vs CMOS RTC", tsc_hz_vs_rtc),
    ("wallclock vs host", wallclock_vs_host),
    ("steal_ns", steal_monotonic),
    ("timer_oneshot", timer_oneshot),
    ("timer_cancel", timer_cancel),
    ("eoi", eoi),
    ("safe_halt", safe_halt),
    ("halt", halt),
    ("io_delay", io_delay),
    ("send_ipi (self)", send_ipi_self),
    ("kick_cpu (self, halted)", kick_self),
    ("send_ipi (other CPU)", send_ipi_other),
    (
        "send_ipi (this and every other CPU, one call)",
        send_ipi_all,
    ),
    ("kick_cpu (other CPU, halted)", kick_other),
    ("flush_tlb (other CPU)", flush_tlb_other),
    ("yield_to", yield_to),
    ("vcpu_is_preempted", vcpu_is_preempted),
    ("flush_tlb (local)", flush_tlb_self),
    ("flush_tlb_range (this and another CPU)", flush_tlb_range),
    ("page_table_write", page_table_write),
    ("flush_tlb_local", flush_tlb_local),
    ("address_space_switch", address_space_switch),
    ("console_write", console_write),
    ("shutdown", shutdown),
    ("panic_notify", panic_notify),
];

/// Each online CPU registered a record of its own, and the hypervisor
/// wrote every one: a CPU given another's record (as CPUs past 64 once
/// were) leaves its own unwritten.
fn own_records(cx: &Context) -> Outcome {
    let cpus = cx.machine.cpus.max(1);
    let online = (0..cpus).filter(|&cpu| cpu == 0 || crate::smp::online(cpu));
    let mut checked = 0;
    for cpu in online {
        match cx.selection.cpu_record_written(cpu) {
            None => {
                return skip!(
                    "the {} backend keeps no per-CPU record it can read back",
                    cx.ops.name()
                )
            }
            Some(false) => return fail!("CPU {cpu}'s record was never written by the hypervisor"),
            Some(true) => checked += 1,
        }
    }
    pass!("{checked} CPU(s), each record written by the hypervisor")
}

/// `hypercall-probe`: call one op that a hypercall serves, harmlessly (at
/// this CPU), and report whether it returned. `cargo xtask test` boots this
/// first under KVM with a timeout: on nested KVM a `vmcall` never returns.
pub fn hypercall_probe(selection: &'static Selection) -> ! {
    let ops = selection.backend;
    let me = ApicId(crate::platform::apic_id());
    let mut out = crate::console::Console;
    let served = |op: Op| {
        selection
            .planned(op)
            .is_some_and(|(_, how)| how.starts_with("hypercall"))
    };
    ops.irq_disable();
    if served(Op::YieldTo) {
        let _ = writeln!(out, "hypercall-probe: calling yield_to");
        ops.yield_to(me);
    } else if served(Op::KickCpu) {
        let _ = writeln!(out, "hypercall-probe: calling kick_cpu");
        ops.kick_cpu(me);
    } else if served(Op::SendIpi) && me.0 < 64 {
        let _ = writeln!(out, "hypercall-probe: calling send_ipi");
        let _ = ops.send_ipi(CpuSet(1 << me.0), Vector(KICK_VECTOR));
    } else {
        let _ = writeln!(out, "hypercall-probe: no op is served by a hypercall here");
        crate::exit::success()
    }
    match crate::hypercall_fixups::FIXED_UP.load(core::sync::atomic::Ordering::SeqCst) {
        0 => writeln!(out, "hypercall-probe: returned"),
        _ => writeln!(
            out,
            "hypercall-probe: returned, as unsupported: the instruction faulted and was fixed up"
        ),
    }
    .ok();
    crate::exit::success()
}

/// Run every test and leave QEMU with the verdict.
pub fn run(selection: &'static Selection, machine: &Machine, cmdline: &str) -> ! {
    let cx = Context {
        selection,
        ops: selection.backend,
        machine,
        cmdline,
        started: selection.backend.clock_ns().0,
    };
    let mut out = crate::console::Console;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let started = cx.started;
    for (name, test) in TESTS {
        cx.ops.irq_disable();
        let fallbacks_before = FellBack::of(op_of(name));
        let test_started = cx.now();
        let outcome = test(&cx);
        cx.ops.irq_disable();
        let took_ms = (cx.now() - test_started) / MS;
        let fell_back = FellBack::of(op_of(name)).since(fallbacks_before);
        let served = if served_paravirtually(selection, op_of(name)) {
            selection.backend.name()
        } else {
            "native"
        };
        let (verdict, detail) = match &outcome {
            Outcome::Pass(t) => {
                passed += 1;
                ("ok", t)
            }
            Outcome::Fail(t) => {
                failed += 1;
                ("FAILED", t)
            }
            Outcome::Skip(t) => {
                skipped += 1;
                ("skipped", t)
            }
        };
        let _ = writeln!(
            out,
            "test {name:<30} [{served:<6}] {verdict}: {}{fell_back} ({took_ms} ms)",
            detail.as_str()
        );
    }
    let _ = writeln!(
        out,
        "selftest took {} ms of guest time",
        (cx.now() - started) / MS
    );
    // What fell back, and why: under a broken hypervisor this is the
    // report that the SDK noticed; and what served.
    crate::run_report::write(&mut out);
    let _ = writeln!(out, "{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        crate::exit::success()
    } else {
        crate::exit::failure()
    }
}

/// Whether a paravirtual step of `op` answered its calls so far (a
/// planned step withdrawn at run time hands them to the next one, which
/// may be paravirtual too: Xen PV dom0's console_write); for an op not yet
/// called, whether its chain plans one.
fn served_paravirtually(selection: &Selection, op: &str) -> bool {
    let steps = pvi_backends::served::summary()
        .find(|&(name, _)| name == op)
        .map_or(0, |(_, steps)| steps);
    if steps != 0 {
        // Bit 0 is native.
        return steps & !1 != 0;
    }
    Op::from_name(op).is_some_and(|op| selection.serving(op).is_some())
}

/// The op a test name starts with.
/// How often an op's paravirtual steps fell back, and why the last time:
/// a test tagged with the backend may have been served by the next step.
#[derive(Clone, Copy)]
struct FellBack {
    times: u64,
    last: Option<pvi_sdk::types::ErrorKind>,
}

impl FellBack {
    fn of(op: &str) -> FellBack {
        pvi_backends::fallback::summary()
            .filter(|e| e.op == op)
            .fold(
                FellBack {
                    times: 0,
                    last: None,
                },
                |acc, e| FellBack {
                    times: acc.times + u64::from(e.times),
                    last: Some(e.kind),
                },
            )
    }

    /// The fallbacks after `earlier`.
    fn since(self, earlier: FellBack) -> FellBack {
        FellBack {
            times: self.times.saturating_sub(earlier.times),
            last: self.last,
        }
    }
}

impl fmt::Display for FellBack {
    /// Nothing when nothing fell back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.times, self.last) {
            (0, _) | (_, None) => Ok(()),
            (1, Some(kind)) => write!(f, "; a step fell back once ({kind:?})"),
            (n, Some(kind)) => write!(f, "; steps fell back {n} times (last: {kind:?})"),
        }
    }
}

fn op_of(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

/// The interrupt flag itself, not an op's answer (on Xen PV, the
/// vCPU's event mask).
fn interrupts_on() -> bool {
    crate::platform::interrupts_enabled()
}

fn invalid_opcode(_: &Context) -> Outcome {
    let before = crate::traps::CAUGHT.load(core::sync::atomic::Ordering::SeqCst);
    crate::traps::expect_fault(6, 2);
    // SAFETY: `ud2` raises #UD, which the handler (told to expect it)
    // reports and resumes after the 2-byte instruction.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    match crate::traps::CAUGHT.load(core::sync::atomic::Ordering::SeqCst) - before {
        1 => pass!("#UD reported and resumed"),
        n => fail!("{n} faults caught, expected 1"),
    }
}

/// A read of an unmapped page faults, the handler reports and resumes,
/// and `fault_address` (which the handler calls) names the address read.
fn page_fault(_: &Context) -> Outcome {
    // The page after the probe page: its page table entry is empty.
    let unmapped = match crate::probe_page::ProbePage::get() {
        Ok(probe) => probe.unmapped_neighbour(),
        Err(why) => return fail!("no probe page: {why}"),
    };
    let before = crate::traps::CAUGHT.load(core::sync::atomic::Ordering::SeqCst);
    crate::traps::expect_fault(14, 3);
    let value: u64;
    // SAFETY: the read faults (#PF, non-present); the handler, told to
    // expect it, reports CR2 and resumes after the 3-byte `mov rax, [rdi]`.
    unsafe {
        core::arch::asm!(
            ".byte 0x48, 0x8b, 0x07", // mov rax, [rdi]
            in("rdi") unmapped,
            out("rax") value,
            options(nostack, readonly)
        )
    };
    let _ = value;
    let reported = crate::traps::LAST_FAULT_ADDRESS.load(core::sync::atomic::Ordering::SeqCst);
    match crate::traps::CAUGHT.load(core::sync::atomic::Ordering::SeqCst) - before {
        1 if reported == unmapped => pass!("#PF at {unmapped:#x} reported and resumed"),
        1 => fail!("#PF caught, but fault_address said {reported:#x}, not {unmapped:#x}"),
        n => fail!("{n} faults caught, expected 1"),
    }
}

/// The kernel's text is read-only once booted (text.rs), call sites
/// patched or not: writing a byte of it back unchanged must fault.
fn text_read_only(_: &Context) -> Outcome {
    let target = text_read_only as *const () as usize;
    if !crate::text::is_read_only(target) {
        return fail!("its page at {target:#x} is writable (or CR0.WP is off)");
    }
    // SAFETY: a byte of this function, in the kernel's mapped text.
    let byte = unsafe { (target as *const u8).read_volatile() };
    let before = crate::traps::CAUGHT.load(core::sync::atomic::Ordering::SeqCst);
    crate::traps::expect_fault(14, 2);
    // SAFETY: the write faults (#PF, read-only page); the handler, told to
    // expect it, resumes after the 2-byte `mov [rdi], al`. Were the page
    // writable, the byte written back is the one already there.
    unsafe {
        core::arch::asm!(
            ".byte 0x88, 0x07", // mov [rdi], al
            in("rdi") target,
            in("al") byte,
            options(nostack)
        )
    };
    match crate::traps::CAUGHT.load(core::sync::atomic::Ordering::SeqCst) - before {
        1 => pass!("a write at {target:#x} faulted"),
        n => fail!("{n} faults caught on a write to the text, expected 1"),
    }
}

fn irq_disable_enable(cx: &Context) -> Outcome {
    cx.ops.irq_enable();
    let on = interrupts_on();
    cx.ops.irq_disable();
    let off = !interrupts_on();
    match (on, off) {
        (true, true) => pass!("{} follows", crate::platform::interrupt_flag_name()),
        _ => fail!(
            "{} reads enabled after irq_enable: {on}, after irq_disable: {}",
            crate::platform::interrupt_flag_name(),
            !off
        ),
    }
}

fn irq_save_restore(cx: &Context) -> Outcome {
    cx.ops.irq_enable();
    let saved_on = cx.ops.irq_save();
    let off_inside = !interrupts_on();
    cx.ops.irq_restore(saved_on);
    let on_after = interrupts_on();
    cx.ops.irq_disable();
    let saved_off = cx.ops.irq_save();
    cx.ops.irq_restore(saved_off);
    let off_after = !interrupts_on();
    if saved_on.contains(IrqFlags::IF)
        && off_inside
        && on_after
        && !saved_off.contains(IrqFlags::IF)
        && off_after
    {
        pass!("saves IF, disables, restores both states")
    } else {
        fail!(
            "saved {saved_on:?} (inside: IF {}), restored IF {on_after}; saved {saved_off:?}, restored IF {}",
            !off_inside,
            !off_after
        )
    }
}

fn clock_vs_tsc(cx: &Context) -> Outcome {
    let hz = cx.ops.tsc_hz().0;
    if hz == 0 {
        return fail!("tsc_hz is 0");
    }
    // Monotonic over back-to-back reads (each costs VM exits under nested
    // KVM, so not too many).
    let mut last = cx.now();
    for _ in 0..1_000 {
        let now = cx.now();
        if now < last {
            return fail!("went backwards: {last} then {now}");
        }
        last = now;
    }
    let (c0, t0) = (cx.now(), rdtsc());
    cx.spin_until(c0 + 50 * MS);
    let (c1, t1) = (cx.now(), rdtsc());
    let by_tsc = u128::from(t1 - t0) * 1_000_000_000 / u128::from(hz);
    let by_clock = u128::from(c1 - c0);
    let diff = by_clock.abs_diff(by_tsc);
    if diff * 100 <= by_tsc {
        pass!("monotonic; {by_clock} ns by clock_ns = {by_tsc} ns by TSC at tsc_hz")
    } else {
        fail!("{by_clock} ns by clock_ns but {by_tsc} ns by TSC")
    }
}

/// One CMOS second, timed by `clock_ns` and by the TSC.
#[derive(Clone, Copy)]
struct RtcSecond {
    clock_ns: u64,
    tsc_ticks: u64,
}

static RTC_SECOND: spin::Once<Option<RtcSecond>> = spin::Once::new();

fn cmos_seconds() -> u8 {
    // SAFETY: the CMOS index and data ports; register 0 is the seconds.
    // Bit 7 of the index (NMI disable) stays clear.
    unsafe {
        outb(0x70, 0x00);
        inb(0x71)
    }
}

/// Wait for the CMOS seconds to change; false if they never do (bounded by
/// reads, not by the clock under test).
fn next_rtc_edge() -> bool {
    let start = cmos_seconds();
    (0..50_000_000u32).any(|_| cmos_seconds() != start)
}

fn rtc_second(cx: &Context) -> Option<RtcSecond> {
    *RTC_SECOND.call_once(|| {
        if !next_rtc_edge() {
            return None;
        }
        let (c0, t0) = (cx.now(), rdtsc());
        if !next_rtc_edge() {
            return None;
        }
        let (c1, t1) = (cx.now(), rdtsc());
        Some(RtcSecond {
            clock_ns: c1 - c0,
            tsc_ticks: t1 - t0,
        })
    })
}

/// Why this machine has no CMOS RTC to test against, if it has none: its
/// FADT says so, or nothing answers the ports.
fn no_rtc(cx: &Context) -> Option<&'static str> {
    cx.machine.no_cmos_rtc.or_else(|| {
        (!pvi_backends::native::cmos_rtc_present())
            .then_some("its ports read 0xff: nothing answers")
    })
}

fn clock_vs_rtc(cx: &Context) -> Outcome {
    if let Some(why) = no_rtc(cx) {
        return skip!("no CMOS RTC on this platform ({why})");
    }
    let Some(s) = rtc_second(cx) else {
        return fail!("the CMOS seconds did not change");
    };
    // The CMOS clock follows the host's time: this is host elapsed time.
    let error_ppm = s.clock_ns.abs_diff(1_000_000_000) / 1_000;
    if error_ppm <= 50_000 {
        pass!("one host second = {} ns ({error_ppm} ppm off)", s.clock_ns)
    } else {
        fail!("one host second = {} ns, more than 5% off", s.clock_ns)
    }
}

fn tsc_hz_vs_rtc(cx: &Context) -> Outcome {
    if let Some(why) = no_rtc(cx) {
        return skip!("no CMOS RTC on this platform ({why})");
    }
    let Some(s) = rtc_second(cx) else {
        return fail!("the CMOS seconds did not change");
    };
    let hz = cx.ops.tsc_hz().0;
    let error_ppm = s.tsc_ticks.abs_diff(hz) * 1_000_000 / hz.max(1);
    if error_ppm <= 20_000 {
        pass!("tsc_hz {hz}, {} ticks in one host second", s.tsc_ticks)
    } else {
        fail!("tsc_hz {hz}, but {} ticks in one host second", s.tsc_ticks)
    }
}

fn wallclock_vs_host(cx: &Context) -> Outcome {
    if cx.selection.serving(Op::Wallclock).is_none() {
        if let Some(why) = no_rtc(cx) {
            return skip!(
                "the wall clock is the CMOS RTC's here, and this platform has none ({why})"
            );
        }
    }
    let wall = cx.ops.wallclock().0 / 1_000_000_000;
    let Some(host) = cx
        .cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("host_time="))
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return skip!("no host_time=SECONDS on the command line (cargo xtask test passes it)");
    };
    // The host stamped the command line just before launching the VM: the
    // guest's wall clock is that plus the boot so far, which is the
    // self-tests' time plus the boot before them (allow 30 s for that;
    // clock_ns's zero is the hypervisor's, not the boot's).
    let since_start = (cx.now() - cx.started) / 1_000_000_000;
    if wall + 2 >= host && wall <= host + since_start + 30 {
        pass!("{wall} s since 1970; the host said {host} at launch")
    } else {
        fail!("{wall} s since 1970, but the host said {host} at launch")
    }
}

fn steal_monotonic(cx: &Context) -> Outcome {
    let first = cx.ops.steal_ns().0;
    let mut last = first;
    for _ in 0..200 {
        let until = cx.now() + 100_000;
        cx.spin_until(until);
        let now = cx.ops.steal_ns().0;
        if now < last {
            return fail!("went backwards: {last} then {now}");
        }
        last = now;
    }
    pass!("monotonic over 200 samples, {first} -> {last} ns")
}

/// Why a timer interrupt did not come.
enum Missed {
    Arm(pvi_sdk::types::PvError),
    NoInterrupt,
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missed::Arm(e) => write!(f, "timer_oneshot: {e:?}"),
            Missed::NoInterrupt => write!(f, "no interrupt within 1 s of the deadline"),
        }
    }
}

/// When a timer interrupt came.
struct Tick {
    /// After the deadline, in ns (negative: before it).
    late: i64,
    /// After `timer_oneshot` returned or the deadline, whichever was later:
    /// an interrupt cannot come before the timer is armed, and arming may
    /// outlast a short delay (it can trap to the hypervisor, and a debug
    /// build under nested virtualization runs slowly).
    after_due: i64,
    /// How long arming took, in ns.
    arming: u64,
}

/// Arm the timer `delay` ahead and wait for its interrupt.
fn one_tick(cx: &Context, delay: u64) -> Result<Tick, Missed> {
    let before = events::seen(0, Event::Timer);
    let start = cx.now();
    let deadline = start + delay;
    cx.ops.timer_oneshot(Nanos(deadline)).map_err(Missed::Arm)?;
    let armed = cx.now();
    cx.ops.irq_enable();
    let arrived = cx.wait_for_tick(before, deadline.max(armed) + 1_000 * MS);
    cx.ops.irq_disable();
    let at = arrived.ok_or(Missed::NoInterrupt)? as i64;
    Ok(Tick {
        late: at - deadline as i64,
        after_due: at - deadline.max(armed) as i64,
        arming: armed.saturating_sub(start),
    })
}

fn timer_oneshot(cx: &Context) -> Outcome {
    const DELAYS_MS: [u64; 3] = [1, 5, 20];
    let mut ticks = [const { None }; 3];
    for (delay, tick) in DELAYS_MS.iter().zip(&mut ticks) {
        match one_tick(cx, delay * MS) {
            Ok(t) => *tick = Some(t),
            Err(why) => return fail!("{delay} ms deadline: {why}"),
        }
    }
    let [Some(a), Some(b), Some(c)] = ticks else {
        return fail!("a deadline went unmeasured");
    };
    let us = |ns: i64| ns / 1_000;
    let late = format_args!("{}, {}, {}", us(a.late), us(b.late), us(c.late));
    let arming = a.arming.max(b.arming).max(c.arming) / 1_000;
    let earliest = a.late.min(b.late).min(c.late);
    let worst = a.after_due.max(b.after_due).max(c.after_due);
    if -earliest > TIMER_EARLY_NS as i64 {
        fail!(
            "an interrupt came {} us before its deadline (1, 5, 20 ms: {late} us late)",
            us(-earliest)
        )
    } else if worst > TIMER_LATE_NS as i64 {
        fail!(
            "an interrupt came {} us after it was due (1, 5, 20 ms: {late} us late; arming took up to {arming} us)",
            us(worst)
        )
    } else {
        pass!(
            "1, 5, 20 ms deadlines met, {late} us late (arming took up to {arming} us; vector {TIMER_VECTOR:#x})"
        )
    }
}

fn timer_cancel(cx: &Context) -> Outcome {
    // Far enough ahead that arming and cancelling, each perhaps a trip to
    // the hypervisor and back, finish well before the deadline.
    let before = events::seen(0, Event::Timer);
    let armed_at = cx.now();
    let deadline = armed_at + 100 * MS;
    if let Err(e) = cx.ops.timer_oneshot(Nanos(deadline)) {
        return fail!("timer_oneshot: {e:?}");
    }
    cx.ops.timer_cancel();
    let cancelled_at = cx.now();
    if cancelled_at >= deadline {
        return fail!(
            "arming and cancelling took {} ms, past the deadline",
            (cancelled_at - armed_at) / MS
        );
    }
    cx.ops.irq_enable();
    cx.spin_until(deadline + 30 * MS);
    cx.ops.irq_disable();
    match events::seen(0, Event::Timer) - before {
        0 => pass!(
            "no interrupt in the 30 ms past the cancelled deadline (arm + cancel: {} us)",
            (cancelled_at - armed_at) / 1_000
        ),
        n => fail!("{n} interrupts after cancelling"),
    }
}

fn eoi(cx: &Context) -> Outcome {
    // Without an EOI the APIC keeps the vector in service and delivers no
    // second interrupt of the same priority; an EOI the guest skipped on a
    // flag the hypervisor never set would stop them the same way.
    let before = pvi_backends::eoi_assist::counts();
    for i in 0..10 {
        if let Err(why) = one_tick(cx, MS) {
            return fail!("interrupt {} of 10 missing: {why}", i + 1);
        }
    }
    let ended = pvi_backends::eoi_assist::counts().since(before);
    if ended.assisted + ended.written == 0 {
        pass!("10 timer interrupts in a row, each acknowledged by the handler")
    } else {
        pass!(
            "10 timer interrupts in a row; of the paravirtual EOIs, {} done by the hypervisor (no exit), {} written",
            ended.assisted,
            ended.written
        )
    }
}

fn safe_halt(cx: &Context) -> Outcome {
    let before = events::seen(0, Event::Timer);
    let deadline = cx.now() + 5 * MS;
    if let Err(e) = cx.ops.timer_oneshot(Nanos(deadline)) {
        return fail!("timer_oneshot: {e:?}");
    }
    // Interrupts are off: the interrupt may already be pending, and
    // safe_halt must still wake (sti; hlt).
    cx.spin_until(deadline + MS);
    cx.ops.safe_halt();
    let woke = cx.now();
    cx.ops.irq_disable();
    match events::seen(0, Event::Timer) - before {
        1 => pass!(
            "woken by the timer pending since {} us",
            (woke - deadline) / 1_000
        ),
        n => fail!("{n} timer interrupts while halted"),
    }
}

fn halt(cx: &Context) -> Outcome {
    let before = events::seen(0, Event::Timer);
    let deadline = cx.now() + 20 * MS;
    if let Err(e) = cx.ops.timer_oneshot(Nanos(deadline)) {
        return fail!("timer_oneshot: {e:?}");
    }
    cx.ops.irq_enable();
    cx.ops.halt();
    let woke = cx.now();
    cx.ops.irq_disable();
    if events::seen(0, Event::Timer) == before {
        fail!("returned without the timer interrupt")
    } else if woke + TIMER_EARLY_NS < deadline {
        fail!("woke {} us before the deadline", (deadline - woke) / 1_000)
    } else {
        pass!(
            "halted until the timer, {} us after its deadline",
            (woke - deadline) / 1_000
        )
    }
}

fn io_delay(cx: &Context) -> Outcome {
    let start = cx.now();
    for _ in 0..100 {
        cx.ops.io_delay();
    }
    pass!("100 calls returned in {} us", (cx.now() - start) / 1_000)
}

fn send_ipi_self(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::SendIpi) {
        return Outcome::Skip(why);
    }
    let me = crate::platform::apic_id();
    if me >= 64 {
        return skip!("APIC id {me} is beyond a CpuSet");
    }
    let before = events::seen(0, Event::Kick);
    if let Err(e) = cx.ops.send_ipi(CpuSet(1 << me), Vector(KICK_VECTOR)) {
        return fail!("send_ipi: {e:?}");
    }
    cx.ops.irq_enable();
    within_100ms(cx, || events::seen(0, Event::Kick) != before);
    cx.ops.irq_disable();
    match events::seen(0, Event::Kick) - before {
        1 => pass!("vector {KICK_VECTOR:#x} counted once on this CPU (APIC id {me})"),
        n => fail!("{n} IPIs counted, expected 1"),
    }
}

fn kick_self(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::KickCpu) {
        return Outcome::Skip(why);
    }
    // With interrupts off the kick stays pending; safe_halt then sleeps
    // and must be woken by it. The timer, 200 ms out, is only a backstop.
    let ticks = events::seen(0, Event::Timer);
    let kicks = events::seen(0, Event::Kick);
    if let Err(e) = cx.ops.timer_oneshot(Nanos(cx.now() + 200 * MS)) {
        return fail!("timer_oneshot (the backstop): {e:?}");
    }
    cx.ops.kick_cpu(ApicId(crate::platform::apic_id()));
    cx.ops.safe_halt();
    cx.ops.irq_disable();
    cx.ops.timer_cancel();
    let woken_by_timer = events::seen(0, Event::Timer) != ticks;
    match events::seen(0, Event::Kick) - kicks {
        1 if !woken_by_timer => pass!("a halted CPU woke to its kick"),
        1 => fail!("the kick arrived, but only with the 200 ms backstop"),
        n => fail!("{n} kicks counted; the backstop timer woke the CPU"),
    }
}

/// The first other CPU that is online: its index and APIC id.
fn other_cpu(cx: &Context) -> Option<(usize, u32)> {
    (1..cx.machine.cpus)
        .find(|&cpu| crate::smp::online(cpu))
        .map(|cpu| (cpu, cx.machine.apic_ids[cpu]))
        .filter(|&(_, apic)| apic < 64)
}

/// Wait up to 100 ms for `f` to hold.
fn within_100ms(cx: &Context, f: impl Fn() -> bool) -> bool {
    let give_up = cx.now() + 100 * MS;
    while !f() {
        if cx.now() > give_up {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

fn send_ipi_other(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::SendIpi) {
        return Outcome::Skip(why);
    }
    let Some((cpu, apic)) = other_cpu(cx) else {
        return skip!("one CPU online (boot with --smp 2)");
    };
    let before = events::seen(cpu, Event::Kick);
    if let Err(e) = cx.ops.send_ipi(CpuSet(1 << apic), Vector(KICK_VECTOR)) {
        return fail!("send_ipi: {e:?}");
    }
    if within_100ms(cx, || events::seen(cpu, Event::Kick) > before) {
        pass!("counted on CPU {cpu} (APIC id {apic}), the target")
    } else {
        fail!("CPU {cpu} (APIC id {apic}) counted no IPI within 100 ms")
    }
}

/// One call to several targets, this CPU among them: where a backend
/// batches the targets (Xen PV's multicall of EVTCHNOP_sends), each must
/// still get the vector exactly once.
fn send_ipi_all(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::SendIpi) {
        return Outcome::Skip(why);
    }
    let me = crate::platform::apic_id();
    // The other online CPUs a CpuSet reaches, and their kicks so far.
    let (mut others, mut before, mut n) = ([0usize; 63], [0u64; 63], 0);
    for cpu in 1..cx.machine.cpus {
        if crate::smp::online(cpu) && cx.machine.apic_ids[cpu] < 64 && n < others.len() {
            others[n] = cpu;
            before[n] = events::seen(cpu, Event::Kick);
            n += 1;
        }
    }
    let (others, before) = (&others[..n], &before[..n]);
    if me >= 64 || others.is_empty() {
        return skip!("one CPU online (boot with --smp 2)");
    }
    let targets = others
        .iter()
        .fold(1u64 << me, |set, &cpu| set | 1 << cx.machine.apic_ids[cpu]);
    let mine = events::seen(0, Event::Kick);
    if let Err(e) = cx.ops.send_ipi(CpuSet(targets), Vector(KICK_VECTOR)) {
        return fail!("send_ipi: {e:?}");
    }
    let got = |i: usize| events::seen(others[i], Event::Kick) - before[i];
    cx.ops.irq_enable();
    within_100ms(cx, || {
        events::seen(0, Event::Kick) != mine && (0..n).all(|i| got(i) > 0)
    });
    cx.ops.irq_disable();
    if let Some(i) = (0..n).find(|&i| got(i) != 1) {
        return fail!("CPU {} counted {} IPIs, expected 1", others[i], got(i));
    }
    match events::seen(0, Event::Kick) - mine {
        1 => pass!("{} CPUs, this one among them, each counted it once", n + 1),
        k => fail!("this CPU counted {k} IPIs, expected 1"),
    }
}

fn kick_other(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::KickCpu) {
        return Outcome::Skip(why);
    }
    let Some((cpu, apic)) = other_cpu(cx) else {
        return skip!("one CPU online (boot with --smp 2)");
    };
    // The other CPU idles in safe_halt; let it settle there.
    let woke = crate::smp::wake_ups(cpu);
    cx.spin_until(cx.now() + MS);
    let settled = crate::smp::wake_ups(cpu);
    cx.ops.kick_cpu(ApicId(apic));
    if within_100ms(cx, || crate::smp::wake_ups(cpu) > settled) {
        pass!(
            "CPU {cpu} left its halt ({} wake-ups before the kick)",
            settled - woke
        )
    } else {
        fail!("CPU {cpu} (APIC id {apic}) stayed halted for 100 ms")
    }
}

fn flush_tlb_other(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::FlushTlb) {
        return Outcome::Skip(why);
    }
    let Some((cpu, apic)) = other_cpu(cx) else {
        return skip!("one CPU online (boot with --smp 2)");
    };
    use crate::probe_page::{ProbePage, MARKS};
    use crate::smp::{ask, Request};
    let probe = match ProbePage::get() {
        Ok(probe) => probe,
        Err(why) => return fail!("no probe page: {why}"),
    };
    // Wake the other CPU with the kernel's own IPI, not an op under test.
    let wake = || crate::smp::wake(apic);
    probe.map(0);
    let Some(first) = ask(cpu, Request::ReadProbe, wake) else {
        return fail!("CPU {cpu} did not answer");
    };
    // The other CPU now caches the old mapping; change it under it.
    probe.remap_without_flush(1);
    let stale = ask(cpu, Request::ReadProbe, wake);
    cx.ops.flush_tlb(CpuSet(1 << apic));
    let after = ask(cpu, Request::ReadProbe, wake);
    probe.map(0);
    match (first == MARKS[0], after) {
        (true, Some(v)) if v == MARKS[1] => pass!(
            "CPU {cpu} sees the new mapping after the flush (before it: {})",
            if stale == Some(MARKS[0]) {
                "stale"
            } else {
                "already new"
            }
        ),
        _ => fail!("CPU {cpu} read {first:#x}, then {after:?} after the flush"),
    }
}

fn yield_to(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::YieldTo) {
        return Outcome::Skip(why);
    }
    let target = other_cpu(cx).map_or(crate::platform::apic_id(), |(_, apic)| apic);
    cx.ops.yield_to(ApicId(target));
    pass!("yield_to(APIC id {target}) returned (a hint: nothing else to observe)")
}

fn vcpu_is_preempted(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::VcpuIsPreempted) {
        return Outcome::Skip(why);
    }
    // The running CPU cannot be preempted while it asks.
    if cx.ops.vcpu_is_preempted(ApicId(crate::platform::apic_id())) {
        return fail!("the running CPU reads as preempted");
    }
    match other_cpu(cx) {
        // Halted or preempted are both honest answers for another CPU.
        Some((cpu, apic)) => pass!(
            "this CPU: running; CPU {cpu} (APIC id {apic}): {}",
            if cx.ops.vcpu_is_preempted(ApicId(apic)) {
                "preempted"
            } else {
                "running"
            }
        ),
        None => pass!("the running CPU reads as running"),
    }
}

fn flush_tlb_self(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::FlushTlb) {
        return Outcome::Skip(why);
    }
    let me = crate::platform::apic_id();
    if me >= 64 {
        return skip!("APIC id {me} is beyond a CpuSet");
    }
    let probe = match crate::probe_page::ProbePage::get() {
        Ok(probe) => probe,
        Err(why) => return fail!("no probe page: {why}"),
    };
    probe.map(0);
    let first = probe.read();
    probe.remap_without_flush(1);
    let stale = probe.read();
    cx.ops.flush_tlb(CpuSet(1 << me));
    let after = probe.read();
    if first == crate::probe_page::MARKS[0] && after == crate::probe_page::MARKS[1] {
        pass!(
            "the new mapping is seen after the flush (before it: {})",
            if stale == crate::probe_page::MARKS[0] {
                "stale"
            } else {
                "already new"
            }
        )
    } else {
        fail!("read {first:#x}, then {after:#x} after the flush")
    }
}

/// A mapping written through `page_table_write` (and flushed with
/// `flush_tlb_local`) is what the new virtual address reads, each way.
fn page_table_write(_: &Context) -> Outcome {
    use crate::probe_page::{ProbePage, MARKS};
    let probe = match ProbePage::get() {
        Ok(probe) => probe,
        Err(why) => return fail!("no probe page: {why}"),
    };
    probe.map(0);
    let first = probe.read();
    probe.map(1);
    let second = probe.read();
    probe.map(0);
    let back = probe.read();
    if [first, second, back] == [MARKS[0], MARKS[1], MARKS[0]] {
        pass!(
            "{:#x} reads frame 0, 1, then 0 again as written",
            probe.address()
        )
    } else {
        fail!("read {first:#x}, {second:#x}, {back:#x}: not frames 0, 1, 0")
    }
}

/// A mapping changed under this CPU's TLB is seen after a one-page
/// `flush_tlb_local`, and after a flush of more than 32 pages (everything).
fn flush_tlb_local(cx: &Context) -> Outcome {
    use crate::probe_page::{ProbePage, MARKS};
    let probe = match ProbePage::get() {
        Ok(probe) => probe,
        Err(why) => return fail!("no probe page: {why}"),
    };
    let mut stale = 0;
    for (pages, to) in [(1, 1), (33, 0)] {
        let from = 1 - to;
        probe.map(from);
        let before = probe.read();
        probe.remap_without_flush(to);
        if probe.read() == MARKS[from] {
            stale += 1;
        }
        cx.ops.flush_tlb_local(probe.address(), pages);
        let after = probe.read();
        if before != MARKS[from] || after != MARKS[to] {
            probe.map(0);
            return fail!(
                "with {pages} page(s): read {before:#x}, then {after:#x} after the flush"
            );
        }
    }
    probe.map(0);
    pass!("1 page and 33 pages (everything) flushed; {stale} of 2 stale before the flush")
}

/// Switching roots changes what an address maps to: the probe page reads
/// frame 0 under the boot root and frame 1 under the second address
/// space's, and frame 0 again once back.
fn address_space_switch(cx: &Context) -> Outcome {
    use crate::probe_page::{ProbePage, MARKS};
    use pvi_sdk::types::Gpa;
    let probe = match ProbePage::get() {
        Ok(probe) => probe,
        Err(why) => return fail!("no probe page: {why}"),
    };
    let (boot, other) = match probe.roots() {
        Ok(roots) => roots,
        Err(why) => return fail!("no second address space: {why}"),
    };
    probe.map(0);
    let before = probe.read();
    // SAFETY: the second root is the boot root's copy: it maps this code,
    // the stack and every static as the boot root does, and only the
    // probe page (which no reference reaches) elsewhere.
    unsafe { cx.ops.address_space_switch(Gpa(other)) };
    let there = probe.read();
    // SAFETY: the boot root, which every CPU runs on.
    unsafe { cx.ops.address_space_switch(Gpa(boot)) };
    let back = probe.read();
    if [before, there, back] == [MARKS[0], MARKS[1], MARKS[0]] {
        pass!(
            "{:#x} reads frame 0, frame 1 under root {other:#x}, then frame 0 under {boot:#x}",
            probe.address()
        )
    } else {
        fail!("read {before:#x}, {there:#x} under root {other:#x}, {back:#x} back under {boot:#x}")
    }
}

/// This CPU and the other, if any, as a CPU set.
fn targets_of(me: u32, other: Option<(usize, u32)>) -> u64 {
    (1u64 << me) | other.map_or(0, |(_, apic)| 1 << apic)
}

/// One page's new mapping, changed under this CPU's TLB and another's,
/// is seen on both after a one-page range flush.
fn flush_tlb_range(cx: &Context) -> Outcome {
    if let Some(why) = cx.hypercall_blocked(Op::FlushTlbRange) {
        return Outcome::Skip(why);
    }
    let me = crate::platform::apic_id();
    if me >= 64 {
        return skip!("APIC id {me} is beyond a CpuSet");
    }
    use crate::probe_page::{ProbePage, MARKS};
    use crate::smp::{ask, Request};
    let probe = match ProbePage::get() {
        Ok(probe) => probe,
        Err(why) => return fail!("no probe page: {why}"),
    };
    let other = other_cpu(cx);
    // Wake the other CPU with the kernel's own IPI, not an op under test.
    let read_there =
        |apic: u32, cpu: usize| ask(cpu, Request::ReadProbe, || crate::smp::wake(apic));
    // A known start on both CPUs: an earlier test may have left the other
    // one caching a later mapping (TCG keeps stale entries as hardware
    // does), so the whole-TLB flush clears it first.
    probe.map(0);
    cx.ops.flush_tlb(CpuSet(targets_of(me, other)));
    let first_here = probe.read();
    let first_there = other.map(|(cpu, apic)| read_there(apic, cpu));
    // Both CPUs now cache the old mapping; change it under them.
    probe.remap_without_flush(1);
    cx.ops
        .flush_tlb_range(CpuSet(targets_of(me, other)), probe.address(), 1);
    let here = probe.read();
    let there = other.map(|(cpu, apic)| read_there(apic, cpu));
    probe.map(0);
    if first_here != MARKS[0] || here != MARKS[1] {
        return fail!("this CPU read {first_here:#x}, then {here:#x} after the flush");
    }
    match (other, first_there, there) {
        (None, ..) => {
            pass!("this CPU sees the new mapping (one CPU online: boot with --smp 2 for another)")
        }
        (Some((cpu, _)), Some(Some(a)), Some(Some(b))) if a == MARKS[0] && b == MARKS[1] => {
            pass!("this CPU and CPU {cpu} see the new mapping after a one-page flush")
        }
        (Some((cpu, _)), a, b) => fail!("CPU {cpu} read {a:?}, then {b:?} after the flush"),
    }
}

fn console_write(cx: &Context) -> Outcome {
    cx.ops.console_write(b"console_write: pvi-console-check\n");
    pass!("wrote the pvi-console-check line (cargo xtask test looks for it)")
}

fn shutdown(_: &Context) -> Outcome {
    skip!("would end this run; cargo xtask test's demo boot checks it powers off")
}

fn panic_notify(_: &Context) -> Outcome {
    skip!("would end this run; cargo xtask test's panic boot checks QEMU sees it")
}
