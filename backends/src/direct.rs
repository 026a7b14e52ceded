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

extern "C" fn eoi_native() {
    BareMetal::lapic_eoi();
}

/// Each backend's own `eoi` routine (`<name>::eoi`), in which its variant
/// is checked once against the static selection (a compare the branch
/// predictor never misses) and its chain runs inline; and [`eoi_direct`],
/// which picks the selected one. Derived from the IDL's list of
/// hypervisors, as [`crate::registry`] is.
macro_rules! direct_eoi {
    ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
        $(
            mod $name {
                use super::{active, eoi_dispatched, Dispatch, PvOps};

                pub(super) extern "C" fn eoi() {
                    match active() {
                        Some(Dispatch::$variant(backend)) => backend.eoi(),
                        _ => eoi_dispatched(),
                    }
                }
            }
        )*

        /// The address of the selected backend's own `eoi` routine, for
        /// `pvi_sdk::patch::Patch::Call`; before selection, the dispatching one.
        pub fn eoi_direct() -> usize {
            let routine: extern "C" fn() = match active() {
                None => eoi_dispatched,
                Some(Dispatch::Native) => eoi_native,
                $(Some(Dispatch::$variant(_)) => $name::eoi,)*
                Some(Dispatch::_Marker(_, never)) => match *never {},
            };
            routine as usize
        }
    };
}

pvi_sdk::for_each_hypervisor!(direct_eoi);
