//! The pvi backends and the run-time choice among them.
//!
//! - [`native`]: bare metal. Its [`BareMetal`](native::BareMetal) routines
//!   end every fallback chain.
//! - one module per hypervisor (behind a cargo feature of the same name):
//!   each implements the generated `Steps` of its ABI, the mechanisms the
//!   IDL's mappings need; the fallback chains themselves are generated
//!   (`pvi_sdk::generated::<hv>::Paravirt`).
//! - [`select`]: detection, `pvi.backend=`, per-CPU setup, the report.
//! - [`direct`]: the routines patched call sites jump to.
//!
//! The kernel provides a [`Platform`](platform::Platform): where memory is
//! physically, which CPU is running, which vectors the native routines use.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod console_ring;
pub mod direct;
pub mod hypercall_page;
pub mod native;
pub mod percpu;
pub mod platform;
pub mod retired;
pub mod select;

/// The run-time records of the chains, kept by the SDK (its generated
/// `Steps` defaults write them): re-exported where the kernel reads them.
pub use pvi_sdk::record::{fallback, served, withdrawn};

pub mod registry;

/// One module per hypervisor of the IDL, `src/<name>.rs`, built under the
/// cargo feature of its name: the list is the IDL's, so a backend is
/// registered by existing (see [`registry`]).
macro_rules! backend_modules {
    ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
        $(
            #[cfg(feature = $feature)]
            pub mod $name;
        )*
    };
}
pvi_sdk::for_each_hypervisor!(backend_modules);
