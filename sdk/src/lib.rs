//! The pvi guest SDK (no_std): what a guest kernel needs to talk to the
//! hypervisor under it, whichever it is.
//!
//! [`generated`] is produced from the IDL in `idl/` by `cargo xtask codegen`:
//! the [`PvOps`] trait, the types, and one module per
//! hypervisor ABI with its constants under their upstream names and its
//! hypercall stubs.
//!
//! **Where to start:** a kernel depends on this crate and on
//! `pvi-backends`, which detects the hypervisor and implements [`PvOps`]
//! for each; its front page shows the boot sequence. The rest of this
//! crate is what those backends are made of, usable on its own: the
//! detection rules ([`detect`]), the shared-record protocols ([`time`]),
//! the hypercall fix-up and call-site patching tables ([`fixup`],
//! [`patch`]). The book (`book/` in the repository, `cargo xtask book`)
//! is the reference for the IDL, every op and every mapping.
//!
//! Most of it is plain logic a host can test. A kvmclock or Xen time
//! record read, for instance, scales the TSC as Linux does:
//!
//! ```
//! use pvi_sdk::time::pvclock::scale_delta;
//! // A 2 GHz TSC: 0.5 ns per tick is mul = 2^31 with no shift.
//! assert_eq!(scale_delta(2_000_000_000, 1 << 31, 0), 1_000_000_000);
//! // A shift of 64 or more shifts every bit out, and is not undefined.
//! assert_eq!(scale_delta(u64::MAX, u32::MAX, 64), 0);
//! ```

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

// Formatted by the generator (prettyplease), not by rustfmt.
#[rustfmt::skip]
pub mod generated;

pub mod arch;
pub mod cpu_area;
pub mod detect;
pub mod fixup;
mod link_records;
pub mod note;
pub mod patch;
pub mod record;
pub mod time;

pub use generated::ops::{NativeRoutines, PvOps};
pub use generated::types;
pub use generated::{INTERFACE_FINGERPRINT, INTERFACE_VERSION};
