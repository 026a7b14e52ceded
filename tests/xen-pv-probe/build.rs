//! Link with the PV layout: addresses at -2 GiB, load addresses from 2 MiB.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/xen-pv.ld");
    println!("cargo:rerun-if-changed=xen-pv.ld");
}
