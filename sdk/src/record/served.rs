//! Which step of each op's chain answered at least one call: the plan says
//! what a chain starts with, this says what actually ran (a reference TSC
//! page Xen's viridian leaves invalid hands every `clock_ns` to the next
//! step). The boot report prints it, and `cargo xtask test` builds the
//! book's "Verified where" table from those lines.
//!
//! A call costs one relaxed load and a branch once its step is known; the
//! first call from a step also sets a bit. Lock-free, for interrupt
//! handlers.

use crate::generated::ops::{Op, OPS};
use core::sync::atomic::{AtomicU16, Ordering::Relaxed};

/// Per op (in `OPS` order): bit `n` set once step `n` served (0 = native).
static SERVED: [AtomicU16; OPS.len()] = [const { AtomicU16::new(0) }; OPS.len()];

/// Record that step `step` (from 1; 0 = native) of `op` answered a call.
/// Steps from 15 on share bit 15.
#[inline(always)]
pub fn record(op: Op, step: usize) {
    let slot = &SERVED[op.row()];
    let bit = 1u16 << step.min(15);
    if slot.load(Relaxed) & bit == 0 {
        slot.fetch_or(bit, Relaxed);
    }
}

/// Every op whose chain ran, with the steps that served it, in op order.
pub fn summary() -> impl Iterator<Item = (&'static str, u16)> {
    OPS.iter()
        .zip(SERVED.iter())
        .map(|(op, bits)| (op.name, bits.load(Relaxed)))
        .filter(|(_, bits)| *bits != 0)
}

/// A bit set from [`summary`] as text: "step 2", "step 1, native".
pub struct Steps(pub u16);

impl Steps {
    /// The steps in the set, paravirtual ones first in chain order, then 0
    /// for the native lowering: the order a report reads them in.
    pub fn each(&self) -> impl Iterator<Item = u16> + '_ {
        (1..16)
            .chain(core::iter::once(0))
            .filter(|n| self.0 & 1 << n != 0)
    }
}

impl core::fmt::Display for Steps {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for n in self.each() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match n {
                0 => f.write_str("native")?,
                _ => write!(f, "step {n}")?,
            }
        }
        if first {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}
