//! Refuse to build bindings that are not what `pvi gen` wrote from the IDL.
//!
//! `src/generated/mod.rs` records two fingerprints. The other generated
//! files', checked wherever the crate builds (a packaged crate included),
//! so that bindings edited by hand are caught. And the IDL files' it came
//! from, checked inside the pvi repository (where `../idl` exists), so
//! that editing the IDL and running `cargo build` says what to do instead
//! of compiling stale bindings.

use std::hash::Hasher;
use std::path::Path;

const PREFIX: &str = "// idl-sources: fnv64 ";
const OUTPUT_PREFIX: &str = "// generated-sources: fnv64 ";

/// FNV-1a 64 over each file's name and bytes, in name order, each
/// followed by a NUL (as pvi-codegen's `output_hash` and the IDL check).
fn fingerprint(mut files: Vec<(String, Vec<u8>)>) -> String {
    files.sort();
    let mut h = fnv::FnvHasher::default();
    for (name, bytes) in &files {
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(bytes);
        h.write(&[0]);
    }
    format!("{:#018x}", h.finish())
}

/// The `.rs` files of `dir` but `mod.rs`, or the `.pvi` files, by name.
fn files(dir: &Path, extension: &str) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension) && p.is_file())
        .filter(|p| !p.ends_with("mod.rs"))
        .map(|p| {
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect()
}

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated_dir = manifest.join("src/generated");
    println!("cargo:rerun-if-changed=src/generated");
    let generated = std::fs::read_to_string(generated_dir.join("mod.rs")).unwrap_or_default();
    let recorded_output = generated
        .lines()
        .find_map(|l| l.strip_prefix(OUTPUT_PREFIX))
        .unwrap_or("none");
    let output = fingerprint(files(&generated_dir, "rs"));
    if recorded_output != output {
        panic!("src/generated is not what pvi gen wrote (its files' fingerprint is {output}, mod.rs records {recorded_output}): regenerate it from the IDL (`cargo xtask codegen` in the pvi repository) instead of editing it");
    }
    let idl = manifest.join("../idl");
    if !idl.is_dir() {
        return;
    }
    println!("cargo:rerun-if-changed=../idl");
    let now = fingerprint(files(&idl, "pvi"));
    let recorded = generated
        .lines()
        .find_map(|l| l.strip_prefix(PREFIX))
        .unwrap_or("none");
    if recorded != now {
        panic!("sdk/src/generated was generated from a different idl/ (recorded {recorded}, idl/ is now {now}): run `cargo xtask codegen`");
    }
}
