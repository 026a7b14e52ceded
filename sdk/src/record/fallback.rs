//! A log of fallbacks: for each op step (and each setup step) that failed
//! and was worked around, why it failed the last time and how often.
//! Lock-free, so that interrupt handlers may record. A step that fails on
//! every call (a console hypercall the hypervisor refuses) takes one line,
//! not the whole log.

use crate::generated::ops::{Op, OPS};
use crate::generated::types::{ErrorKind, PvError};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

/// Setup steps that can fail and be worked around, logged like ops.
pub const SETUP: &[&str] = &[
    "setup: hypercall page left empty",
    "setup: Xen PV's periodic timer left running",
];

/// Rows: every op, then every setup step.
const ROWS: usize = OPS.len() + SETUP.len();
/// Steps per op that get a row each; later ones share the last.
const STEPS: usize = 8;
const MAX_TIMES: u32 = (1 << 24) - 1;

/// Per row and step: how often (bits 31:8) and the last kind (bits 7:0).
static TABLE: [[AtomicU32; STEPS]; ROWS] = [const { [const { AtomicU32::new(0) }; STEPS] }; ROWS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

const KINDS: &[ErrorKind] = ErrorKind::ALL;

/// One op step that fell back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The op (or a [`SETUP`] step).
    pub op: &'static str,
    /// The step that failed (from 1; 0 for setup).
    pub step: usize,
    /// Why, the last time.
    pub kind: ErrorKind,
    /// How often (saturating at 2^24 - 1).
    pub times: u32,
}

/// Record that `op`'s step `step` failed with `error`.
pub fn record(op: Op, step: usize, error: PvError) {
    record_row(op.row(), step, error);
}

/// Record that setup step `setup` (an index of [`SETUP`]) failed with
/// `error`; out-of-range indices are counted, not listed.
pub fn record_setup(setup: usize, error: PvError) {
    record_row(OPS.len() + setup, 0, error);
}

fn record_row(row: usize, step: usize, error: PvError) {
    COUNT.fetch_add(1, Relaxed);
    if row >= ROWS {
        return;
    }
    // `ALL` holds every kind in declaration order: the index is the kind.
    let kind = error.kind as u32;
    let slot = &TABLE[row][step.min(STEPS - 1)];
    let _ = slot.fetch_update(Relaxed, Relaxed, |v| {
        let times = ((v >> 8) + 1).min(MAX_TIMES);
        Some(times << 8 | kind)
    });
}

/// How many fallbacks happened.
pub fn count() -> usize {
    COUNT.load(Relaxed)
}

/// Each op step that fell back, in op order, setup steps last.
pub fn summary() -> impl Iterator<Item = Event> {
    (0..ROWS).flat_map(|row| {
        (0..STEPS).filter_map(move |step| {
            let v = TABLE[row][step].load(Relaxed);
            let times = v >> 8;
            (times > 0).then(|| Event {
                op: OPS
                    .get(row)
                    .map(|o| o.name)
                    .unwrap_or_else(|| SETUP[row - OPS.len()]),
                step,
                // Only `record_row` writes the index, from a kind.
                kind: KINDS
                    .get((v & 0xff) as usize)
                    .copied()
                    .unwrap_or(ErrorKind::Unsupported),
                times,
            })
        })
    })
}
