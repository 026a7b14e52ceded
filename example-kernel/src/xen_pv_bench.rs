//! The hot ops' cost on Xen PV, per call, in TSC ticks: Xen PV's inline
//! forms at patched sites (`form=patched`) and the ops through the
//! run-time dispatch (`form=runtime`, the routines). Booted under TCG with
//! `-icount shift=0` (`cargo xtask bench`), a tick is one retired
//! instruction, so these are instruction counts, Xen's included if it ran
//! meanwhile (the median of 21 samples leaves such samples out).
//!
//! Run by the PV entry when its command line has the word `bench`, after
//! the checks (`hot_sites::patch` made the sites the inline forms).

use crate::bench::{per_call, report, HOT};
use core::hint::black_box;
use pvi_backends::registry::Backend;
use pvi_sdk::types::IrqFlags;
use pvi_sdk::PvOps;

/// Each irq op's patched site, then the op through the dispatch, with
/// events masked before each `irq_save` and `irq_restore` (restoring a
/// masked state: its common path), and masked at the end.
pub(crate) fn run(backend: &Backend) {
    report(
        format_args!("op=irq_disable form=patched"),
        per_call(HOT, || pvi_sdk::patchable_irq_disable!()),
    );
    report(
        format_args!("op=irq_enable form=patched"),
        per_call(HOT, || pvi_sdk::patchable_irq_enable!()),
    );
    // The flags of a masked state: IF clear.
    let masked = IrqFlags::empty();
    backend.irq_disable();
    report(
        format_args!("op=irq_save form=patched"),
        per_call(HOT, || {
            black_box(pvi_sdk::patchable_irq_save!());
        }),
    );
    report(
        format_args!("op=irq_restore form=patched"),
        per_call(HOT, || pvi_sdk::patchable_irq_restore!(masked)),
    );
    report(
        format_args!("op=irq_disable form=runtime"),
        per_call(HOT, || backend.irq_disable()),
    );
    report(
        format_args!("op=irq_enable form=runtime"),
        per_call(HOT, || backend.irq_enable()),
    );
    backend.irq_disable();
    report(
        format_args!("op=irq_save form=runtime"),
        per_call(HOT, || {
            black_box(backend.irq_save());
        }),
    );
    report(
        format_args!("op=irq_restore form=runtime"),
        per_call(HOT, || backend.irq_restore(masked)),
    );
    backend.irq_disable();
}
