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

/// Run `command`, an error naming `what` unless it succeeds.
pub fn run(what: &str, command: &mut Command) -> Result<(), String> {
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

/// Which serial lines are the guest's, for `cargo xtask run --xen`: as
/// dom0, every line but Xen's own (`(XEN)`); as a domU, the dom0's
/// progress lines (`pvi-dom0:`), the domU's console log it prints, and
/// what the domU wrote to port 0xE9 (Xen prints it as `(d1) …`, with
/// `console.e9`).
pub struct GuestLines {
    domu: bool,
    inside_log: bool,
}

impl GuestLines {
    /// For a boot under `accel`.
    pub fn new(accel: crate::qemu::Accel) -> GuestLines {
        GuestLines {
            domu: accel.under_linux_dom0().is_some(),
            inside_log: false,
        }
    }

    /// Whether `line`, the next one, is the guest's.
    pub fn keep(&mut self, line: &str) -> bool {
        if !self.domu {
            return !line.starts_with("(XEN)");
        }
        if line.starts_with(crate::dom0::LOG_BEGINS) {
            self.inside_log = true;
        } else if line.starts_with(crate::dom0::LOG_ENDS) {
            self.inside_log = false;
        }
        self.inside_log || line.starts_with("pvi-dom0:") || line.starts_with("(d")
    }
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
        let mut dom0 = GuestLines::new(crate::qemu::Accel::XenDom0);
        assert!(!dom0.keep("(XEN) Brought up 2 CPUs"));
        assert!(dom0.keep("test clock_ns vs TSC [xen] ok"));
        let mut domu = GuestLines::new(crate::qemu::Accel::XenPvh { viridian: false });
        assert!(!domu.keep("[    7.2] reboot: Power down"));
        assert!(domu.keep("pvi-dom0: toolstack up; xl create -F /pvi/domu.cfg"));
        assert!(domu.keep(crate::dom0::LOG_BEGINS));
        assert!(domu.keep("test steal_ns [xen] ok"));
        assert!(domu.keep(crate::dom0::LOG_ENDS));
        assert!(!domu.keep("(XEN) Hardware Dom0 shutdown: rebooting machine"));
        assert!(domu.keep("(d1) backend: hyperv"));
        assert!(!domu.keep("(XEN) d1: VIRIDIAN HYPERCALL: enabled: 1 pfn: 20a"));
    }
}
