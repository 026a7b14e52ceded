//! The pvi guest SDK (no_std): what a guest kernel needs to talk to the
//! hypervisor under it, whichever it is.
//!
//! [`generated`] is produced from the IDL in `idl/` by `cargo xtask codegen`:
//! the [`PvOps`] trait, the types, and one module per
//! hypervisor ABI with its constants under their upstream names and its
//! hypercall stubs.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

// Formatted by the generator (prettyplease), not by rustfmt.
#[rustfmt::skip]
pub mod generated;

pub mod arch;
pub mod detect;
pub mod fixup;
pub mod note;
pub mod patch;
pub mod record;
pub mod time;

pub use generated::ops::{NativeRoutines, PvOps};
pub use generated::types;
pub use generated::{INTERFACE_FINGERPRINT, INTERFACE_VERSION};
