//! Compile-fail tests of the generated SDK live in `cases/`; `ui.rs` runs
//! them with trybuild. This package is separate from `pvi-tests` so that
//! trybuild, which builds a test package's dependencies for every case
//! project, builds only the SDKs.
