//! Bare metal: the routines behind every op's native lowering, and the
//! backend that uses nothing else.

mod cmos;
pub(crate) mod flush;
mod gdt;
mod gs_base;
pub mod idt;
pub mod lapic;
mod power;
mod serial;
mod start;
pub mod tsc;

pub use cmos::present as cmos_rtc_present;

use pvi_sdk::generated::ops::{InitStartupStartupUses, LapicTimerOneshotUses};
use pvi_sdk::types::{ApicId, CpuSet, Gpa, Hertz, Nanos, PvError, ShutdownReason, Vector};
use pvi_sdk::{NativeRoutines, PvOps};

/// The bare-metal routines, ending every fallback chain. They run in ring
/// 0 (ports, MSRs, the local APIC); see [`crate::platform::Platform`] for
/// what they need from the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct BareMetal;

impl NativeRoutines for BareMetal {
    fn tsc_clock_ns() -> Nanos {
        tsc::clock_ns()
    }
    fn tsc_hz_from_cpuid_or_pit() -> Hertz {
        tsc::hz()
    }
    fn cmos_wallclock() -> Nanos {
        cmos::wallclock()
    }
    fn no_steal() -> Nanos {
        Nanos(0)
    }
    /// Ring 0 reaches every port: nothing to ask.
    fn ports_reachable_in_ring_0() {}
    unsafe fn init_startup_startup<P: PvOps + ?Sized>(
        uses: InitStartupStartupUses<'_, P>,
        target: ApicId,
        entry: u64,
        stack: u64,
        root: Gpa,
        arg: u64,
    ) -> Result<(), PvError> {
        // SAFETY: the op's contract, which is `start`'s.
        unsafe { start::start(&|| uses.clock_ns(), target, entry, stack, root, arg) }
    }
    fn lapic_timer_oneshot<P: PvOps + ?Sized>(
        uses: LapicTimerOneshotUses<'_, P>,
        deadline: Nanos,
    ) -> Result<(), PvError> {
        lapic::timer_oneshot(&|| uses.clock_ns(), deadline)
    }
    fn lapic_timer_cancel() {
        lapic::timer_cancel()
    }
    fn lapic_eoi() {
        lapic::eoi()
    }
    fn lapic_send_ipi(targets: CpuSet, vector: Vector) -> Result<(), PvError> {
        lapic::send_ipi(targets, vector)
    }
    fn lapic_kick(target: ApicId) {
        lapic::kick(target)
    }
    fn spin_pause(_target: ApicId) {
        core::hint::spin_loop()
    }
    fn never_preempted(_cpu: ApicId) -> bool {
        false
    }
    fn ipi_flush_tlb(targets: CpuSet) {
        if let Err(e) = flush::flush_tlb(targets) {
            crate::fallback::record(pvi_sdk::generated::ops::Op::FlushTlb, 0, e);
        }
    }
    fn ipi_flush_tlb_range(targets: CpuSet, start: u64, pages: u64) {
        if let Err(e) = flush::flush_tlb_range(targets, start, pages) {
            crate::fallback::record(pvi_sdk::generated::ops::Op::FlushTlbRange, 0, e);
        }
    }
    unsafe fn page_table_notice_none(_table: Gpa, _level: u8) -> Result<(), PvError> {
        // Bare metal trusts the kernel's page tables: there is no one to tell.
        Ok(())
    }
    unsafe fn page_table_release_none(_table: Gpa) -> Result<(), PvError> {
        Ok(())
    }
    unsafe fn wrmsr_gs_base(base: u64) -> Result<(), PvError> {
        // SAFETY: the op's contract, which is `gs_base::set`'s.
        unsafe { gs_base::set(base) }
    }
    unsafe fn lgdt_table(table: u64, entries: u16) -> Result<(), PvError> {
        // SAFETY: the op's contract, which is `gdt::load`'s.
        unsafe { gdt::load(table, entries) }
    }
    unsafe fn lidt_gates(table: u64, entries: u16) -> Result<(), PvError> {
        // SAFETY: the op's contract, which is `idt::load`'s.
        unsafe { idt::load(table, entries) }
    }
    fn invlpg_or_flush_all(start: u64, pages: u64) {
        flush::flush_local(start, pages)
    }
    fn serial_write(data: &[u8]) {
        serial::write(data)
    }
    fn native_shutdown(reason: ShutdownReason) -> Result<(), PvError> {
        power::shutdown(reason)
    }
    fn pvpanic_port() {
        power::panic_notify()
    }
}

/// The flush IPI's handler: call it from the kernel's flush vector.
pub fn flush_ipi_handler() {
    flush::handler()
}

/// The backend with no hypervisor: every op native.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

impl PvOps for Native {
    type Native = BareMetal;
}
