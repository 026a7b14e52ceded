//! Patching the kernel's hot-op call sites (`pvi_sdk::patch`) for the
//! selected backend.

use pvi_backends::select::Selection;
use pvi_sdk::patch::{apply, sites, Applied, HotOp, Patch};

/// What becomes of a site of `op` under `selection`: an op the backend
/// leaves native gets its instructions; `eoi`, which has no fixed
/// instruction, a direct call to the backend's own routine; an irq op a
/// hypervisor serves, the hypervisor's inline form where the backend can
/// use it (Xen PV's store into `vcpu_info`), else a call through the
/// dispatch that keeps every register (never the native instruction,
/// which a deprivileged kernel cannot run).
fn decide(selection: &Selection, op: HotOp) -> Patch {
    match op {
        HotOp::Eoi => Patch::Call(pvi_backends::direct::eoi_direct()),
        _ if pvi_sdk::generated::ops::Op::from_name(op.name())
            .and_then(|op| selection.serving(op))
            .is_none() =>
        {
            Patch::Native
        }
        _ => match pvi_backends::inline_forms::inline_form(op) {
            Some(form) => Patch::Inline(form),
            None => {
                pvi_backends::direct::irq_callee_save(op).map_or(Patch::Keep, Patch::CalleeSave)
            }
        },
    }
}

/// Rewrite every site as [`decide`] says, with the kernel's text made
/// writable for the while. Call it on the boot CPU before the others start.
pub fn patch(selection: &Selection) -> Applied {
    crate::text::with_text_writable(|| {
        // SAFETY: the records are the kernel's own and their replacements
        // lie in .rodata; the text is writable inside this closure; the
        // caller runs this on the boot CPU before any other CPU starts; an
        // `eoi` target is an `extern "C" fn()`, a callee-save one keeps
        // every register but the op's result.
        unsafe { apply(sites(), |op| decide(selection, op)) }
    })
}
