//! A log of fallbacks: each time a step of a fallback chain failed and the
//! next one was tried. Lock-free, so that interrupt handlers may record.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use pvi_sdk::generated::ops::OPS;
use pvi_sdk::types::{ErrorKind, PvError};

const SLOTS: usize = 32;
static EVENTS: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

const KINDS: &[ErrorKind] = &[
    ErrorKind::Unsupported,
    ErrorKind::InvalidArgument,
    ErrorKind::Busy,
    ErrorKind::Denied,
    ErrorKind::BadAddress,
    ErrorKind::Failed,
];

/// One fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The op.
    pub op: &'static str,
    /// The step that failed (from 1).
    pub step: usize,
    /// Why.
    pub kind: ErrorKind,
}

/// Record that `op`'s step `step` failed with `error`.
pub fn record(op: &'static str, step: usize, error: PvError) {
    let op_index = OPS.iter().position(|o| o.name == op).unwrap_or(0xff) as u32;
    let kind = KINDS
        .iter()
        .position(|k| *k == error.kind)
        .unwrap_or(KINDS.len() - 1) as u32;
    let packed = 1 << 31 | (op_index & 0xff) << 16 | (step as u32 & 0xff) << 8 | kind;
    let n = COUNT.fetch_add(1, Relaxed);
    EVENTS[n % SLOTS].store(packed, Relaxed);
}

/// How many fallbacks happened.
pub fn count() -> usize {
    COUNT.load(Relaxed)
}

/// The most recent fallbacks, oldest first (at most 32).
pub fn recent() -> impl Iterator<Item = Event> {
    let n = count();
    let first = n.saturating_sub(SLOTS);
    (first..n).filter_map(|i| {
        let packed = EVENTS[i % SLOTS].load(Relaxed);
        if packed & 1 << 31 == 0 {
            return None;
        }
        let op = OPS
            .get(((packed >> 16) & 0xff) as usize)
            .map(|o| o.name)
            .unwrap_or("?");
        let kind = KINDS
            .get((packed & 0xff) as usize)
            .copied()
            .unwrap_or(ErrorKind::Failed);
        Some(Event {
            op,
            step: ((packed >> 8) & 0xff) as usize,
            kind,
        })
    })
}
