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
    /// The hypercall faulted and the SDK's fix-up resumed it as
    /// "unsupported": ops fall back, and nothing hangs.
    FixedUp,
    /// The boot did not finish in time: the hypercall never returned.
    Hangs,
    /// The hypercall raised an exception in the guest (the kernel's report
    /// of it). On nested KVM here the host writes to the hypercall
    /// instruction's own address, which faults on the read-only text.
    Faults(String),
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
        Ok((Some(EXIT_SUCCESS), output, elapsed)) if output.contains("was fixed up") => {
            (Probe::FixedUp, elapsed)
        }
        Ok((Some(EXIT_SUCCESS), _, elapsed)) => (Probe::Returns, elapsed),
        Ok((None, _, elapsed)) => (Probe::Hangs, elapsed),
        Ok((Some(code), output, elapsed)) => match hypercall_fault(&output) {
            Some(report) => (Probe::Faults(report), elapsed),
            None => (
                Probe::Failed(format!("QEMU exit status {code}:\n{output}")),
                elapsed,
            ),
        },
        Err(e) => (Probe::Failed(e), Duration::ZERO),
    }
}

/// This host boot's identity: a probe's answer holds until the host
/// reboots (or its KVM changes, which takes one).
/// The kernel's exception report, when the probe's hypercall faulted.
fn hypercall_fault(output: &str) -> Option<String> {
    let after = output.split_once("hypercall-probe: calling")?.1;
    let exception = after.lines().find(|l| l.starts_with("exception: "))?;
    let detail = after
        .lines()
        .find(|l| l.trim_start().starts_with("address "))
        .map(str::trim);
    Some(match detail {
        Some(d) => format!("{exception}; {d}"),
        None => exception.to_string(),
    })
}

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
        return Some(matches!(answer.trim(), "returns" | "fixed-up"));
    }
    println!(
        "xtask run: checking whether a KVM vmcall returns on this host (once per host boot, up to {} s)",
        PROBE_TIMEOUT.as_secs()
    );
    let (probe, _) = kvm_hypercalls(kernel, Path::new("target/boot/hypercall-probe.log"));
    let answer = match probe {
        Probe::Returns => "returns",
        Probe::FixedUp => "fixed-up",
        Probe::Hangs => "hangs",
        Probe::Faults(report) => {
            println!("xtask run: the probe's hypercall faulted in the guest ({report})");
            "faults"
        }
        Probe::Failed(why) => {
            println!("xtask run: the probe failed ({why})");
            return None;
        }
    };
    if let Some(cache) = cache {
        let _ = std::fs::create_dir_all("target/boot");
        let _ = std::fs::write(cache, answer);
    }
    Some(matches!(answer, "returns" | "fixed-up"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_after_the_call_is_the_hypercall_s_and_one_before_is_not() {
        let faulted = "backend: kvm\nhypercall-probe: calling yield_to\n\
            exception: page fault (#PF) (vector 14), error code 0x3, CPU 0\n\
            \x20 address 0x12756c: write on a present page, kernel mode\n";
        assert_eq!(
            hypercall_fault(faulted).as_deref(),
            Some("exception: page fault (#PF) (vector 14), error code 0x3, CPU 0; address 0x12756c: write on a present page, kernel mode")
        );
        let before =
            "exception: invalid opcode (#UD)\nhypercall-probe: calling yield_to\npanic: x\n";
        assert_eq!(hypercall_fault(before), None);
    }
}
