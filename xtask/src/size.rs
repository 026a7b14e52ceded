//! Code size: the example kernel's `.text` built with every backend, with
//! none (bare metal), and with each alone, and a check that a build
//! without a backend links none of its code (2007: "+6.4% text with no
//! hypervisor present").

use object::{Object, ObjectSection, ObjectSymbol};
use std::path::{Path, PathBuf};

/// One build of the kernel: which backends, and its `.text` in bytes.
pub struct Variant {
    /// `all`, `native`, or a backend's name.
    pub name: String,
    /// `.text` bytes.
    pub text: u64,
    /// Symbols of backends this build should not contain.
    pub foreign: Vec<String>,
}

/// Build the kernel (release) with exactly `backends` into its own target
/// directory; the ELF's path.
fn build(name: &str, backends: &[&str]) -> Result<PathBuf, String> {
    let target_dir = std::fs::canonicalize("target")
        .map_err(|e| format!("target/: {e}"))?
        .join("bench/kernel");
    let mut command = crate::cargo::kernel_cargo();
    command
        .args(["build", "--quiet", "--release", "--no-default-features"])
        .arg("--target-dir")
        .arg(&target_dir);
    if !backends.is_empty() {
        let features: Vec<String> = backends
            .iter()
            .map(|b| format!("pvi-backends/{b}"))
            .collect();
        command.args(["--features", &features.join(",")]);
    }
    if !command.status().is_ok_and(|s| s.success()) {
        return Err(format!("the example kernel ({name}) did not build"));
    }
    let elf = target_dir.join("x86_64-unknown-none/release/pvi-example-kernel");
    let kept = target_dir.join(format!("pvi-example-kernel.{name}"));
    std::fs::copy(&elf, &kept).map_err(|e| format!("{}: {e}", elf.display()))?;
    Ok(kept)
}

/// Whether demangled symbol `name` is code of backend `b` (module paths
/// `pvi_backends::<b>::` and `pvi_sdk::generated::<b>::`).
fn of_backend(name: &str, b: &str) -> bool {
    name.contains(&format!("pvi_backends::{b}::"))
        || name.contains(&format!("pvi_sdk::generated::{b}::"))
}

/// `.text` size, and the demangled symbols that belong to a backend not in
/// `backends` (and not to the ABI a built one borrows: Xen PV's hypercalls
/// are `pvi_sdk::generated::xen`'s, `abis`). A backend that is in but shows
/// no symbol means the search is blind (symbols stripped, paths renamed):
/// an error, not a clean result.
fn inspect(
    elf: &Path,
    backends: &[&str],
    all: &[String],
    abis: &[(String, String)],
) -> Result<(u64, Vec<String>), String> {
    let bytes = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let file = object::File::parse(&*bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
    let text = file
        .section_by_name(".text")
        .map(|s| s.size())
        .ok_or_else(|| format!("{}: no .text", elf.display()))?;
    let absent: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|b| !backends.contains(b))
        .collect();
    let mut foreign = Vec::new();
    let mut seen = vec![0usize; backends.len()];
    for symbol in file.symbols().filter(|s| s.size() > 0) {
        let Ok(name) = symbol.name() else { continue };
        let name = rustc_demangle::demangle(name).to_string();
        for (count, b) in seen.iter_mut().zip(backends) {
            *count += usize::from(of_backend(&name, b));
        }
        let borrowed = abis
            .iter()
            .any(|(b, abi)| backends.contains(&b.as_str()) && of_backend(&name, abi));
        if !borrowed && absent.iter().any(|b| of_backend(&name, b)) {
            foreign.push(name);
        }
    }
    if let Some((_, b)) = seen.iter().zip(backends).find(|(n, _)| **n == 0) {
        return Err(format!(
            "{}: no symbol of {b}, which it was built with: the leak check would be blind",
            elf.display()
        ));
    }
    Ok((text, foreign))
}

/// Every variant: all backends, bare metal, each backend alone.
pub fn measure() -> Result<Vec<Variant>, String> {
    // One per hypervisor of the IDL, each the pvi-backends feature of its
    // name (the registry's list, `pvi_backends::registry`).
    let all = crate::hypervisors::names()?;
    let abis = crate::hypervisors::abis()?;
    let mut plans: Vec<(String, Vec<&str>)> = vec![
        ("all".into(), all.iter().map(String::as_str).collect()),
        ("native".into(), Vec::new()),
    ];
    plans.extend(all.iter().map(|b| (b.clone(), vec![b.as_str()])));
    let mut out = Vec::new();
    for (name, backends) in plans {
        println!("==> building the example kernel: {name}");
        let elf = build(&name, &backends)?;
        let (text, foreign) = inspect(&elf, &backends, &all, &abis)?;
        out.push(Variant {
            name,
            text,
            foreign,
        });
    }
    Ok(out)
}
