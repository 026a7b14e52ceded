//! What the interrupt handlers saw, per CPU: the evidence the self-tests
//! check (a timer tick and when it came, IPIs counted on their target).

use crate::firmware::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use pvi_sdk::PvOps;

/// Something a handler counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A timer interrupt.
    Timer,
    /// The kick (wake-up) IPI.
    Kick,
    /// The TLB flush IPI.
    Flush,
    /// `int3`.
    Breakpoint,
    /// The APIC's spurious vector.
    Spurious,
    /// A vector this kernel does not use.
    Unexpected,
}

const EVENTS: usize = 6;

static COUNTS: [[AtomicU64; EVENTS]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; EVENTS] }; MAX_CPUS];
/// `clock_ns` when each CPU's last timer interrupt arrived.
static LAST_TICK_AT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn cpu() -> usize {
    crate::cpu_local::index()
}

/// Count `event` on this CPU.
pub fn count(event: Event) {
    COUNTS[cpu()][event as usize].fetch_add(1, SeqCst);
}

/// How many `event`s `cpu` has seen.
pub fn seen(cpu: usize, event: Event) -> u64 {
    COUNTS[cpu][event as usize].load(SeqCst)
}

/// The timer handler: note when, then count.
pub fn timer_tick() {
    let now = crate::ops().map_or(0, |s| s.backend.clock_ns().0);
    LAST_TICK_AT[cpu()].store(now, SeqCst);
    count(Event::Timer);
}

/// `clock_ns` at `cpu`'s last timer interrupt.
pub fn last_tick_at(cpu: usize) -> u64 {
    LAST_TICK_AT[cpu].load(SeqCst)
}
