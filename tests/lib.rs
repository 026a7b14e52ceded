//! Host-side integration tests of the pvi toolchain. The tests are the
//! `[[test]]` targets of this package; this library holds what they share.

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The `.pvi` files of the real interface, sorted.
pub fn idl_files() -> Vec<PathBuf> {
    pvi_codegen::collect_files(&[root().join("idl")]).expect("idl/ is readable")
}

/// Whether expected-output files should be rewritten (`PVI_BLESS=1`,
/// set by `cargo xtask test --bless`).
pub fn blessing() -> bool {
    std::env::var_os("PVI_BLESS").is_some_and(|v| v == "1")
}

/// The sourced cross-check lists of upstream values.
#[path = "upstream.rs"]
pub mod upstream;
