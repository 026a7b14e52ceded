//! Whether a KVM hypercall returns on this host. On nested KVM a `vmcall`
//! never completes (DESIGN.md), so a self-test calling one would hang: the
//! kernel's `hypercall-probe` word calls one op a hypercall serves, and a
//! boot that has not finished after [`PROBE_TIMEOUT`] means it hung.

use crate::qemu::{Accel, Boot, EXIT_SUCCESS};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the probe boot may take before the hypercall counts as hung.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the probe found.
pub enum Probe {
    /// The hypercall returned.
    Returns,
    /// The boot did not finish in time: the hypercall never returned.
    Hangs,
    /// The probe itself went wrong.
    Failed(String),
}

/// Boot `hypercall-probe` under KVM and wait; `log` gets the serial output.
pub fn kvm_hypercalls(kernel: &Path, log: &Path) -> (Probe, Duration) {
    let boot = Boot {
        kernel,
        accel: Accel::Kvm,
        smp: 1,
        cpu_extra: "",
        cmdline: "hypercall-probe",
        vm_args: &[],
    };
    match boot.captured(log, PROBE_TIMEOUT) {
        Ok((Some(EXIT_SUCCESS), _, elapsed)) => (Probe::Returns, elapsed),
        Ok((None, _, elapsed)) => (Probe::Hangs, elapsed),
        Ok((Some(code), output, elapsed)) => (
            Probe::Failed(format!("QEMU exit status {code}:\n{output}")),
            elapsed,
        ),
        Err(e) => (Probe::Failed(e), Duration::ZERO),
    }
}

/// This host boot's identity: a probe's answer holds until the host
/// reboots (or its KVM changes, which takes one).
fn host_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether KVM hypercalls return, probed at most once per host boot (the
/// answer is kept in `target/boot/`). `None` if the probe went wrong: the
/// caller must then assume they may not.
pub fn kvm_hypercalls_cached(kernel: &Path) -> Option<bool> {
    let cache = host_boot_id().map(|id| PathBuf::from(format!("target/boot/kvm-hypercalls.{id}")));
    if let Some(answer) = cache.as_ref().and_then(|c| std::fs::read_to_string(c).ok()) {
        return Some(answer.trim() == "returns");
    }
    println!(
        "xtask run: checking whether a KVM vmcall returns on this host (once per host boot, up to {} s)",
        PROBE_TIMEOUT.as_secs()
    );
    let (probe, _) = kvm_hypercalls(kernel, Path::new("target/boot/hypercall-probe.log"));
    let answer = match probe {
        Probe::Returns => "returns",
        Probe::Hangs => "hangs",
        Probe::Failed(why) => {
            println!("xtask run: the probe failed ({why})");
            return None;
        }
    };
    if let Some(cache) = cache {
        let _ = std::fs::create_dir_all("target/boot");
        let _ = std::fs::write(cache, answer);
    }
    Some(answer == "returns")
}
