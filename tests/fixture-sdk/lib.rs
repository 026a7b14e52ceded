//! The generators' golden output for `tests/codegen-fixture`, as a crate.
//! `cargo xtask test` builds it with every interface feature, warnings
//! denied; the UI tests use it as a guest built for interface 1.0.

#![no_std]

// Generated files are formatted by the generator, not by rustfmt.
#[rustfmt::skip]
#[path = "../golden/rust/mod.rs"]
pub mod generated;

/// The SDK's run-time records, which the generated `Steps` defaults write.
#[path = "../../sdk/src/record/mod.rs"]
pub mod record;

/// Alpha's stubs with `ud2` for `vmcall`/`vmmcall`.
#[rustfmt::skip]
#[path = "../golden/trap/alpha.rs"]
pub mod alpha_trap;
