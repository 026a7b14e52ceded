//! The end of a run's report: what fell back and why, and which step of
//! each op's chain answered. `cargo xtask test` reads both: the first
//! shows the SDK noticed a broken hypervisor, the second feeds the book's
//! "Verified where" table.

use core::fmt::Write;

/// Write the fallback log and the served steps to `out`.
pub fn write(out: &mut impl Write) {
    let _ = writeln!(out, "fallbacks: {}", pvi_backends::fallback::count());
    for e in pvi_backends::fallback::summary() {
        let _ = writeln!(
            out,
            "  {} step {}: {:?} (x{})",
            e.op, e.step, e.kind, e.times
        );
    }
    let _ = writeln!(out, "served (the steps that answered each op's calls):");
    for (op, steps) in pvi_backends::served::summary() {
        let _ = writeln!(out, "  {op:<18} {}", pvi_backends::served::Steps(steps));
    }
}
