//! The routines patched call sites jump to (`pvi_sdk::patch`): an
//! unpatched `eoi` site calls [`eoi_dispatched`], which matches on the
//! backend chosen at run time as every `Dispatch` op does; after patching,
//! it calls the chosen backend's own routine ([`eoi_direct`]) instead, in
//! which the variant is known and the chain is inlined.

use crate::native::BareMetal;
use crate::select::active;
use pvi_sdk::generated::ops::Dispatch;
use pvi_sdk::{NativeRoutines, PvOps};

/// `eoi` through the run-time dispatch: what an unpatched site calls.
pub extern "C" fn eoi_dispatched() {
    match active() {
        Some(backend) => backend.eoi(),
        None => BareMetal::lapic_eoi(),
    }
}

/// One backend's `eoi`: its variant is checked once against the static
/// selection (a compare the branch predictor never misses), then its chain
/// runs inline.
macro_rules! eoi_of {
    ($name:ident, $variant:ident) => {
        extern "C" fn $name() {
            match active() {
                Some(Dispatch::$variant(backend)) => backend.eoi(),
                _ => eoi_dispatched(),
            }
        }
    };
}

eoi_of!(eoi_hyperv, Hyperv);
eoi_of!(eoi_kvm, Kvm);
eoi_of!(eoi_vmware, Vmware);
eoi_of!(eoi_xen, Xen);

extern "C" fn eoi_native() {
    BareMetal::lapic_eoi();
}

/// The address of the selected backend's own `eoi` routine, for
/// `pvi_sdk::patch::Patch::Call`; before selection, the dispatching one.
pub fn eoi_direct() -> usize {
    let routine: extern "C" fn() = match active() {
        None => eoi_dispatched,
        Some(Dispatch::Native) => eoi_native,
        Some(Dispatch::Hyperv(_)) => eoi_hyperv,
        Some(Dispatch::Kvm(_)) => eoi_kvm,
        Some(Dispatch::Vmware(_)) => eoi_vmware,
        Some(Dispatch::Xen(_)) => eoi_xen,
        Some(Dispatch::_Marker(_, never)) => match *never {},
    };
    routine as usize
}
