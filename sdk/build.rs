//! Refuse to build bindings older than the IDL they are generated from.
//!
//! `src/generated/mod.rs` records a hash of the IDL files it came from;
//! inside the pvi repository (where `../idl` exists) this recomputes it, so
//! that editing the IDL and running `cargo build` says what to do instead
//! of compiling stale bindings. Elsewhere it does nothing.

use std::hash::Hasher;
use std::path::Path;

const PREFIX: &str = "// idl-sources: fnv64 ";

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let idl = manifest.join("../idl");
    println!("cargo:rerun-if-changed=src/generated/mod.rs");
    if !idl.is_dir() {
        return;
    }
    println!("cargo:rerun-if-changed=../idl");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&idl)
        .expect("idl/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pvi") && p.is_file())
        .map(|p| {
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    let mut h = fnv::FnvHasher::default();
    for (name, bytes) in &files {
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(bytes);
        h.write(&[0]);
    }
    let now = format!("{:#018x}", h.finish());
    let generated =
        std::fs::read_to_string(manifest.join("src/generated/mod.rs")).unwrap_or_default();
    let recorded = generated
        .lines()
        .find_map(|l| l.strip_prefix(PREFIX))
        .unwrap_or("none");
    if recorded != now {
        panic!("sdk/src/generated was generated from a different idl/ (recorded {recorded}, idl/ is now {now}): run `cargo xtask codegen`");
    }
}
