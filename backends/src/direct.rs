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

/// The irq ops through the run-time dispatch, as C functions: what the
/// callee-save entries below call.
mod dispatched {
    use super::{active, BareMetal, PvOps};
    use pvi_sdk::generated::ops::native;
    use pvi_sdk::types::IrqFlags;

    pub(super) extern "C" fn irq_disable() {
        match active() {
            Some(backend) => backend.irq_disable(),
            None => native::irq_disable::<BareMetal>(),
        }
    }

    pub(super) extern "C" fn irq_enable() {
        match active() {
            Some(backend) => backend.irq_enable(),
            None => native::irq_enable::<BareMetal>(),
        }
    }

    pub(super) extern "C" fn irq_save() -> u64 {
        match active() {
            Some(backend) => backend.irq_save(),
            None => native::irq_save::<BareMetal>(),
        }
        .bits()
    }

    pub(super) extern "C" fn irq_restore(flags: u64) {
        let flags = IrqFlags::from_bits_retain(flags);
        match active() {
            Some(backend) => backend.irq_restore(flags),
            None => native::irq_restore::<BareMetal>(flags),
        }
    }
}

// Callee-save entries through the dispatch, as Linux's PV_CALLEE_SAVE
// thunks around a C function: every register the C ABI lets a callee
// change is saved around the call, but the op's result (`rax` for
// `irq_save`). Nine pushes (eight and a pad for `irq_save`) keep the stack
// 16-byte aligned at the call. A served irq op's site calls one of these
// (`pvi_sdk::patch::Patch::CalleeSave`), and a hypervisor's inline form
// takes one on its rare path (`call {op}`).
core::arch::global_asm!(
    ".pushsection .text.pvi_callee_save_dispatch, \"ax\"",
    ".balign 16",
    ".globl __pvi_irq_disable_dispatch",
    "__pvi_irq_disable_dispatch:",
    "push rax; push rcx; push rdx; push rsi; push rdi; push r8; push r9; push r10; push r11",
    "call {disable}",
    "pop r11; pop r10; pop r9; pop r8; pop rdi; pop rsi; pop rdx; pop rcx; pop rax",
    "ret",
    ".balign 16",
    ".globl __pvi_irq_enable_dispatch",
    "__pvi_irq_enable_dispatch:",
    "push rax; push rcx; push rdx; push rsi; push rdi; push r8; push r9; push r10; push r11",
    "call {enable}",
    "pop r11; pop r10; pop r9; pop r8; pop rdi; pop rsi; pop rdx; pop rcx; pop rax",
    "ret",
    ".balign 16",
    ".globl __pvi_irq_save_dispatch",
    "__pvi_irq_save_dispatch:",
    "sub rsp, 8; push rcx; push rdx; push rsi; push rdi; push r8; push r9; push r10; push r11",
    "call {save}",
    "pop r11; pop r10; pop r9; pop r8; pop rdi; pop rsi; pop rdx; pop rcx; add rsp, 8",
    "ret",
    ".balign 16",
    ".globl __pvi_irq_restore_dispatch",
    "__pvi_irq_restore_dispatch:",
    "push rax; push rcx; push rdx; push rsi; push rdi; push r8; push r9; push r10; push r11",
    "call {restore}",
    "pop r11; pop r10; pop r9; pop r8; pop rdi; pop rsi; pop rdx; pop rcx; pop rax",
    "ret",
    ".popsection",
    disable = sym dispatched::irq_disable,
    enable = sym dispatched::irq_enable,
    save = sym dispatched::irq_save,
    restore = sym dispatched::irq_restore,
);

/// The callee-save entries, by op, for `sym` operands (the inline forms').
pub(crate) mod callee_save {
    // SAFETY: each name is defined by the `global_asm!` above, as a
    // routine that takes and keeps what these declarations say.
    unsafe extern "C" {
        /// `irq_disable` through the dispatch; every register kept.
        #[link_name = "__pvi_irq_disable_dispatch"]
        pub(crate) fn irq_disable();
        /// `irq_enable` through the dispatch; every register kept.
        #[link_name = "__pvi_irq_enable_dispatch"]
        pub(crate) fn irq_enable();
        /// `irq_save` through the dispatch; every register but `rax` kept.
        #[link_name = "__pvi_irq_save_dispatch"]
        pub(crate) fn irq_save();
        /// `irq_restore` (flags in `rdi`) through the dispatch; every
        /// register kept.
        #[link_name = "__pvi_irq_restore_dispatch"]
        pub(crate) fn irq_restore();
    }
}

/// The callee-save entry of irq op `op` through the run-time dispatch, for
/// `pvi_sdk::patch::Patch::CalleeSave`: what a site of an op the selected
/// backend serves, with no inline form, must call (its unpatched call runs
/// the native instruction, which a deprivileged kernel cannot); `None` for
/// `eoi`, whose sites are redirected to [`eoi_direct`].
pub fn irq_callee_save(op: pvi_sdk::patch::HotOp) -> Option<usize> {
    use pvi_sdk::patch::HotOp;
    let entry: unsafe extern "C" fn() = match op {
        HotOp::IrqDisable => callee_save::irq_disable,
        HotOp::IrqEnable => callee_save::irq_enable,
        HotOp::IrqSave => callee_save::irq_save,
        HotOp::IrqRestore => callee_save::irq_restore,
        HotOp::Eoi => return None,
    };
    Some(entry as usize)
}
