//! Waiting a while on the chosen backend's clock, with interrupts as they
//! are (for the few places that must wait without a timer).

use pvi_backends::select::Backend;
use pvi_sdk::PvOps;

/// Spin for `ns` nanoseconds of `ops.clock_ns()`.
pub fn spin_for(ops: &Backend, ns: u64) {
    let until = ops.clock_ns().0 + ns;
    while ops.clock_ns().0 < until {
        core::hint::spin_loop();
    }
}
