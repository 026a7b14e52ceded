//! The hot ops' inline forms (the IDL's `inline`), assembled into the
//! kernel from `pvi_sdk::for_each_inline_sequence!` and handed to the
//! patcher for the selected backend: a patched site of Xen PV's
//! `irq_disable` becomes one GS-relative store into this vCPU's
//! `vcpu_info`, with no call and no hypercall.
//!
//! Each form is assembled once, read-only, behind a two-byte header (its
//! length, and where its `call {op}`'s displacement ends, 0 for none),
//! with `area` bound to the SDK's GS offset of the CPU area and `op` to
//! the op's callee-save entry through the dispatch
//! ([`crate::direct::irq_callee_save`]).

use crate::registry::hooks;
use crate::select::active;
use pvi_sdk::patch::{HotOp, Sequence};

/// A form's header and bytes, at the address of its header.
///
/// # Safety
///
/// `header` is an assembled form's (below): its length byte, its call's
/// end, then that many bytes, read-only for ever.
unsafe fn sequence_at(header: *const u8) -> Sequence {
    // SAFETY: the caller's contract.
    unsafe {
        let len = usize::from(header.read());
        let call_end = usize::from(header.add(1).read());
        Sequence {
            bytes: core::slice::from_raw_parts(header.add(2), len),
            call_end,
        }
    }
}

macro_rules! inline_forms {
    ($(($hv:ident, $variant:ident, $op:ident, $asm:literal)),* $(,)?) => {
        $(
            core::arch::global_asm!(
                ".pushsection .rodata.pvi_inline_forms, \"a\"",
                concat!(".globl __pvi_inline_", stringify!($hv), "_", stringify!($op)),
                concat!("__pvi_inline_", stringify!($hv), "_", stringify!($op), ":"),
                ".byte 7772f - 7771f, 7770f - 7771f",
                "7771:",
                $asm,
                "7772:",
                // Its callee-save entry, named for a form without a call.
                ".long {op} - .",
                ".popsection",
                area = const pvi_sdk::cpu_area::GS_OFFSET,
                op = sym crate::direct::callee_save::$op,
            );
        )*

        /// The inline form of `op` the selected backend's hypervisor
        /// declares, if the backend has its per-CPU structure in each CPU's
        /// area (the forms reach it through GS); `None` otherwise, and for
        /// native.
        pub fn inline_form(op: HotOp) -> Option<Sequence> {
            let backend = active()?;
            if !hooks(backend)?.cpu_area_in_use() {
                return None;
            }
            $(
                if matches!(backend, crate::registry::Backend::$variant(_))
                    && op.name() == stringify!($op)
                {
                    // SAFETY: the name is the header the `global_asm!` above
                    // assembles for this form, read-only bytes.
                    unsafe extern "C" {
                        #[link_name = concat!("__pvi_inline_", stringify!($hv), "_", stringify!($op))]
                        static HEADER: u8;
                    }
                    // SAFETY: the header assembled above for this form.
                    return Some(unsafe { sequence_at(core::ptr::addr_of!(HEADER)) });
                }
            )*
            None
        }

        /// Every form the IDL declares, by hypervisor name and op, for
        /// tests and tools that show them.
        pub fn all_inline_forms() -> impl Iterator<Item = (&'static str, HotOp, Sequence)> {
            [$(
                {
                    // SAFETY: as in `inline_form`.
                    unsafe extern "C" {
                        #[link_name = concat!("__pvi_inline_", stringify!($hv), "_", stringify!($op))]
                        static HEADER: u8;
                    }
                    // SAFETY: the header assembled above for this form.
                    let form = unsafe { sequence_at(core::ptr::addr_of!(HEADER)) };
                    HotOp::ALL
                        .into_iter()
                        .find(|op| op.name() == stringify!($op))
                        .map(|op| (stringify!($hv), op, form))
                },
            )*]
            .into_iter()
            .flatten()
        }
    };
}

pvi_sdk::for_each_inline_sequence!(inline_forms);
