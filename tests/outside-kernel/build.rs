//! The lower-half kernel links with the linker's defaults; the higher-half
//! one needs a script, for its load addresses differ from its addresses.

fn main() {
    println!("cargo:rerun-if-changed=higher-half.ld");
    if std::env::var_os("CARGO_FEATURE_HIGHER_HALF").is_some() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/higher-half.ld");
    }
}
