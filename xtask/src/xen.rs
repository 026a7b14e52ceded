//! The real Xen, for `cargo xtask run --xen` and the boot matrix: Debian's
//! `xen-hypervisor-4.17-amd64` package, fetched with `apt-get download` and
//! unpacked under `target/xen/` (never installed), booted under QEMU TCG
//! with the example kernel as its PVH dom0.
//!
//! QEMU's TCG emulates SVM with nested paging, so Xen runs here as on an
//! AMD machine with HAP. The flags below are the ones that boot on these
//! machines (measured; the book's "Real Xen" section says why each):
//! `-machine q35 -cpu max`, and `-device amd-iommu`, without which Xen
//! refuses a PVH hardware domain ("iommu must be enabled for PVH hardware
//! domain").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Debian package that carries the hypervisor.
pub const PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The hypervisor inside it (gzip-compressed multiboot ELF).
const IMAGE_IN_PACKAGE: &str = "boot/xen-4.17-amd64.gz";

/// The unpacked hypervisor, once [`provision`] found or made it.
static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// The hypervisor [`provision`] prepared.
pub fn binary() -> Option<&'static Path> {
    BINARY.get().map(PathBuf::as_path)
}

/// The package version apt would fetch (`apt-cache show`), if apt knows
/// the package.
fn candidate_version() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", PACKAGE])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_string())
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Make sure the hypervisor is unpacked under `target/xen/<version>/`:
/// fetched and unpacked when missing or when Debian's version changed.
pub fn provision() -> Result<&'static Path, String> {
    if let Some(path) = binary() {
        return Ok(path);
    }
    let mut version = candidate_version();
    if version.is_none() {
        println!("xtask: apt does not know {PACKAGE} yet: apt-get update");
        run(
            "apt-get update",
            Command::new("apt-get").args(["update", "-qq"]),
        )?;
        version = candidate_version();
    }
    let version = version.ok_or_else(|| {
        format!("apt has no {PACKAGE} (Debian 12 carries it): the real-Xen boots need Debian's package archive")
    })?;
    let dir = PathBuf::from("target/xen").join(version.replace([':', '+', '~'], "_"));
    let xen = dir.join("xen");
    if !xen.exists() {
        println!(
            "xtask: fetching {PACKAGE} {version} (apt-get download; not installed) into {}",
            dir.display()
        );
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run(
            "apt-get download",
            Command::new("apt-get")
                .args(["download", "-qq", &format!("{PACKAGE}={version}")])
                .current_dir(&dir),
        )?;
        let deb = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or("apt-get download left no .deb")?;
        let unpacked = dir.join("unpacked");
        run(
            "dpkg-deb -x",
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        )?;
        let compressed = unpacked.join(IMAGE_IN_PACKAGE);
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(&compressed)
            .output()
            .map_err(|e| format!("gzip: {e}"))?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(format!("gzip could not unpack {}", compressed.display()));
        }
        // Write beside, then rename: an interrupted run leaves no half file
        // that the next run would take for the hypervisor.
        let partial = dir.join("xen.partial");
        std::fs::write(&partial, &out.stdout).map_err(|e| format!("{}: {e}", partial.display()))?;
        std::fs::rename(&partial, &xen).map_err(|e| format!("{}: {e}", xen.display()))?;
    }
    Ok(BINARY.get_or_init(|| xen).as_path())
}

/// Xen's own command line for a PVH dom0 with `vcpus` vCPUs: its console
/// on COM1 (so every line, Xen's and the guest's console hypercalls, comes
/// out of QEMU's serial port), all log levels, and `noreboot` so that a
/// crash stops rather than loops.
pub fn dom0_command_line(vcpus: u32) -> String {
    format!(
        "console=com1 com1=115200,8n1 dom0=pvh dom0_mem=256M dom0_max_vcpus={vcpus} loglvl=all guest_loglvl=all noreboot"
    )
}

/// Whether a serial line is Xen's own (it prefixes each with `(XEN)`).
pub fn is_xen_line(line: &str) -> bool {
    line.starts_with("(XEN)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_line_asks_for_the_vcpus_and_keeps_xen_on_com1() {
        let line = dom0_command_line(2);
        assert!(line.contains("dom0=pvh"));
        assert!(line.contains("dom0_max_vcpus=2"));
        assert!(line.contains("console=com1"));
    }

    #[test]
    fn xen_lines_are_told_apart_from_the_guest_lines() {
        assert!(is_xen_line("(XEN) Brought up 2 CPUs"));
        assert!(!is_xen_line("test clock_ns vs TSC [xen] ok"));
    }
}
