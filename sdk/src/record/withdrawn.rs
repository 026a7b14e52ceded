//! Op steps withdrawn at run time: mechanisms the hypervisor announced but
//! that were seen to fail for good (a timer that accepts a deadline and
//! never fires, a hypercall the hypervisor answers "no such call"). A
//! withdrawn step is skipped by its chain from then on
//! (`Steps::withdrawn`), and the withdrawal is logged as a fallback.
//!
//! Until something is withdrawn, asking costs one relaxed load; after,
//! one more, of the op's own byte.

use super::fallback;
use crate::generated::ops::{Op, OPS};
use crate::generated::types::{ErrorKind, PvError};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

/// Per op (in `OPS` order): bit `n - 1` set when step `n` is withdrawn.
static STEPS: [AtomicU8; OPS.len()] = [const { AtomicU8::new(0) }; OPS.len()];
static ANY: AtomicBool = AtomicBool::new(false);

/// Withdraw step `step` (1 to 8) of `op` because of `why`, which the
/// fallback log keeps. Steps beyond 8 are ignored.
pub fn withdraw(op: Op, step: usize, why: PvError) {
    if mark(op, step) {
        fallback::record(op, step, why);
    }
}

/// Set the bit; false for a step beyond 8.
fn mark(op: Op, step: usize) -> bool {
    if !(1..=8).contains(&step) {
        return false;
    }
    STEPS[op.row()].fetch_or(1 << (step - 1), Relaxed);
    ANY.store(true, Relaxed);
    true
}

/// Step `step` of `op` failed with `error` and its chain goes on: log it,
/// and withdraw the step when the hypervisor itself said it has no such
/// call. Asking again would cost another trip to the hypervisor for the
/// same answer (on a host where the hypercall instruction faults, a fault
/// per call): call the new hypercall, fall back to the old one on ENOSYS,
/// once. The backends' `Steps::fell_back` is this.
pub fn fell_back(op: Op, step: usize, error: PvError) {
    fallback::record(op, step, error);
    if refused_for_good(error) {
        mark(op, step);
    }
}

/// Whether `error` is the hypervisor's own "unsupported" status
/// (`KVM_ENOSYS`, `XEN_EOPNOTSUPP`, `HV_STATUS_INVALID_HYPERCALL_CODE`, …):
/// kind `Unsupported` with the non-zero code it returned. What pvi decides
/// itself carries `Native` or code 0 and may pass later (a Hyper-V
/// reference TSC page with sequence 0 is valid again after a migration).
pub fn refused_for_good(error: PvError) -> bool {
    error.kind == ErrorKind::Unsupported && error.origin.code().is_some_and(|code| code != 0)
}

/// Whether step `step` of `op` has been withdrawn.
#[inline]
pub fn is_withdrawn(op: Op, step: usize) -> bool {
    // Every paravirtual step of every op asks: one relaxed load until
    // anything is withdrawn, then the op's own byte.
    ANY.load(Relaxed)
        && (1..=8).contains(&step)
        && STEPS[op.row()].load(Relaxed) & 1 << (step - 1) != 0
}

/// Withdraw the step `plan` (a generated `plan(features)`) starts `op`'s
/// chain with, unless that is the native one.
pub fn withdraw_planned(plan: &[(Op, (usize, &'static str))], op: Op, why: PvError) {
    if let Some((_, (step, text))) = plan.iter().find(|(o, _)| *o == op) {
        if *text != "native" {
            withdraw(op, *step, why);
        }
    }
}
