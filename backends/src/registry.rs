//! The one place backends are registered, and nothing is written in it per
//! backend: the hypervisors come from the IDL (`pvi_sdk::for_each_hypervisor!`,
//! generated from `idl/*.pvi`), and each one whose cargo feature (its IDL
//! name) is on is served by `crate::<name>::<Variant>` through the
//! [`HypervisorBackend`] hooks. The run-time [`Backend`] type, the list of
//! built-in backends, building the chosen one and every per-backend
//! dispatch of [`crate::select`] are derived here; the module declarations
//! in `lib.rs` and the direct call sites of [`crate::direct`] from the same
//! list.

use crate::native::BareMetal;
use crate::platform::MemoryRegion;
use crate::select::Upcall;
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::ops::Dispatch;
use pvi_sdk::types::PvError;

/// What the registry asks of a backend, beyond the `Steps` of its ABI that
/// the generated chains use. Only [`new`](Self::new) has no default.
pub trait HypervisorBackend {
    /// The backend for the hypervisor detection found: read its features,
    /// write its setup MSRs, fill in its hypercall page.
    ///
    /// # Safety
    ///
    /// `choice` must be this backend's hypervisor, as detection reported
    /// it (its chains will make that hypervisor's hypercalls); the caller
    /// runs at the kernel's privilege (ring 0, or ring 3 as a Xen PV
    /// guest), on the boot CPU, once.
    unsafe fn new(choice: &Choice) -> Self
    where
        Self: Sized;

    /// Register this CPU's shared records with the hypervisor (kvmclock,
    /// steal time, runstate, a synthetic timer); called on every CPU, the
    /// boot CPU included. The default registers nothing.
    fn init_cpu(&self) {}

    /// Acknowledge, from the timer vector's handler and before its EOI,
    /// what the hypervisor wants acknowledged there (Xen's event channel,
    /// when its upcall shares the timer's vector). The default has nothing
    /// to acknowledge.
    fn timer_interrupt(&self) {}

    /// Acknowledge, from the upcall vector's handler, the events the
    /// hypervisor delivered, and say which arrived. The default: none.
    fn upcall_interrupt(&self) -> Upcall {
        Upcall::default()
    }

    /// Whether the hypervisor keeps its per-CPU structure in each CPU's
    /// area (`pvi_sdk::cpu_area`) from the boot CPU on, so that the hot
    /// ops' inline forms (the IDL's `inline`) may be patched in. The
    /// default: no.
    fn cpu_area_in_use(&self) -> bool {
        false
    }

    /// Whether the calling CPU's per-CPU structure is in its area, as the
    /// boot CPU's is when [`cpu_area_in_use`](Self::cpu_area_in_use): a
    /// CPU without it is refused by `Selection::init_cpu`. The default:
    /// yes (nothing to miss).
    fn cpu_area_here(&self) -> bool {
        true
    }

    /// Wait (bounded) until whoever reads the hypervisor's console has read
    /// all that was written; whether it has. The default: nothing to wait
    /// for.
    fn flush_console(&self) -> bool {
        true
    }

    /// The guest's memory map from the hypervisor, into `regions` (how many
    /// entries it wrote), for a loader that gave none; `None` where the
    /// hypervisor has no such call (the default).
    fn memory_map(&self, regions: &mut [MemoryRegion]) -> Option<Result<usize, PvError>> {
        let _ = regions;
        None
    }

    /// Whether the hypervisor has written CPU `cpu`'s own per-CPU record
    /// (kvmclock, Xen's runstate area): evidence, read back from memory
    /// only the hypervisor writes, that `init_cpu` on that CPU registered
    /// a record of its own. `None` where the backend has no such record
    /// registered on the boot CPU (the default).
    fn cpu_record_written(&self, cpu: usize) -> Option<bool> {
        let _ = cpu;
        None
    }

    /// Attempts a shared clock record's version protocol took over `reads`
    /// reads on this CPU (a figure for the benchmark); `None` without such
    /// a record (the default).
    fn clock_attempts(&self, reads: u32) -> Option<u64> {
        let _ = reads;
        None
    }
}

/// Everything derived from the list of hypervisors: one arm per backend in
/// each function, each behind its cargo feature.
macro_rules! registry {
    ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
        /// Each hypervisor's slot in [`Backend`]: its backend's ops when it
        /// is built in, otherwise an `Absent` slot that is never chosen.
        #[allow(missing_docs)]
        pub mod slot {
            $(
                #[cfg(feature = $feature)]
                pub type $variant = crate::$name::Ops;
                #[cfg(not(feature = $feature))]
                pub type $variant = pvi_sdk::generated::ops::Absent<crate::native::BareMetal>;
            )*
        }

        /// The backend chosen at run time: `PvOps` for the whole kernel.
        pub type Backend = Dispatch<BareMetal, $(slot::$variant),*>;

        /// The backends this build contains, by IDL name.
        pub const COMPILED_IN: &[&str] = &[
            "native",
            $(
                #[cfg(feature = $feature)]
                $feature,
            )*
        ];

        /// The hypervisors whose backends this build contains.
        pub const BUILT: &[pvi_sdk::generated::Hypervisor] = &[
            $(
                #[cfg(feature = $feature)]
                pvi_sdk::generated::Hypervisor::$variant,
            )*
        ];

        /// The backend for `choice`: native for none, or for a hypervisor
        /// this build left out.
        ///
        /// # Safety
        ///
        /// As [`HypervisorBackend::new`], for `choice`'s hypervisor.
        pub(crate) unsafe fn build(choice: Option<Choice>) -> Backend {
            match choice {
                $(
                    #[cfg(feature = $feature)]
                    Some(c) if c.hypervisor == pvi_sdk::generated::Hypervisor::$variant => {
                        // SAFETY: `c` is this hypervisor, as detection found
                        // it; ring 0, boot CPU, once: the caller's contract.
                        Backend::$variant(pvi_sdk::generated::$name::Paravirt(unsafe {
                            <crate::$name::$variant as HypervisorBackend>::new(&c)
                        }))
                    }
                )*
                _ => Backend::Native,
            }
        }

        /// The chosen backend's hooks; `None` for native.
        pub(crate) fn hooks(backend: &Backend) -> Option<&dyn HypervisorBackend> {
            match backend {
                $(
                    #[cfg(feature = $feature)]
                    Backend::$variant(b) => Some(&b.0),
                )*
                _ => None,
            }
        }

        /// The step `op`'s chain starts with on the chosen backend (its
        /// number from 1 and IDL text); `None` for native or an op the
        /// hypervisor does not map.
        #[allow(unused_variables)] // without any backend built in
        pub(crate) fn planned(backend: &Backend, op: pvi_sdk::generated::ops::Op) -> Option<(usize, &'static str)> {
            match backend {
                $(
                    #[cfg(feature = $feature)]
                    Backend::$variant(b) => b.planned(op),
                )*
                _ => None,
            }
        }
    };
}

pvi_sdk::for_each_hypervisor!(registry);
