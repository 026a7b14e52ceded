//! VM exits per call: the example kernel's `exits` word, booted where a
//! host counts its exits (pvi-sim's `--exit-mailbox`; QEMU+KVM with
//! `pvi-exit-counter` beside it; the real Xen 4.17, whose own trace the
//! test dom0 reads with `xentrace` and `pvi-xentrace-exits`), read into
//! one table keyed
//! `<op>/<backend>/<form>` (`runtime`: through the backend chosen at boot;
//! `static`: the native lowering) or by the hardware counterpart (`hpet`,
//! `pm_timer`, `pit`, `tsc`, `lapic_eoi/<apic mode>`).

use crate::kernel_bench::field;
use crate::qemu::{Accel, Boot, EXIT_POWERED_OFF, EXIT_SUCCESS};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Where the guest's mailbox goes: 128 MiB, free RAM in a 256 MiB guest.
const MAILBOX: &str = "0x8000000";

/// The personalities pvi-sim presents for the table; KVM's is counted
/// under QEMU+KVM instead, KVM itself answering.
const SIM_PERSONALITIES: &[&str] = &["xen", "hyperv", "vmware"];

/// One key's exits: the fewest over the guest's repeats, by kind, and the
/// most of all kinds (a first call that discovers something, or an
/// interrupt in between).
#[derive(Clone, Debug, PartialEq)]
pub struct ExitCount {
    /// Every kind together.
    pub all: u64,
    /// Port I/O, MMIO, MSR, CPUID, hypercall.
    pub kinds: [u64; 5],
    /// How many of `all` the VMM completed in user space.
    pub to_vmm: u64,
    /// Paravirtual EOIs KVM saw completed without an exit.
    pub pv_eoi: u64,
    /// Of `all`, the `rdtsc`s the hypervisor emulated, where it says (Xen's
    /// trace does; KVM's tracepoints have no such kind).
    pub rdtsc: Option<u64>,
    /// Of `all`, a Xen PV guest's privileged instructions Xen emulated
    /// (its trace names no instruction: `rdtsc`, `in`, `rdmsr`, …).
    pub privop: Option<u64>,
    /// The step of the backend's chain that served the op (`native` when
    /// every paravirtual step was withdrawn); `None` for the native
    /// lowering and the hardware.
    pub served: Option<String>,
    /// The most exits of all kinds one call took.
    pub most: u64,
    /// The VMM that counted: `pvi-sim`, `qemu-kvm` or `xen-4.17`.
    pub vmm: &'static str,
}

/// The kinds' names, in [`ExitCount::kinds`]' order.
pub const KINDS: [&str; 5] = ["io", "mmio", "msr", "cpuid", "hypercall"];

/// What one boot counted.
pub struct ExitBoot {
    /// The backend the kernel chose.
    pub backend: String,
    /// Exits by key.
    pub counts: BTreeMap<String, ExitCount>,
    /// Keys not measured, with why.
    pub skipped: Vec<String>,
}

/// Read the kernel's `exits` lines.
pub fn parse(vmm: &'static str, serial: &str) -> ExitBoot {
    let mut boot = ExitBoot {
        backend: String::new(),
        counts: BTreeMap::new(),
        skipped: Vec::new(),
    };
    // Console writes print dots before a line: find the word, not the
    // line's start.
    let lines = || {
        serial
            .lines()
            .filter_map(|l| l.find("exits").map(|i| &l[i..]))
    };
    // Where the counts are made after the run (Xen's trace, counted in
    // its dom0), the kernel's `served` lines come before them.
    let mut served = Vec::new();
    for line in lines() {
        let banner = line
            .strip_prefix("exits: per op, counted by the host (backend ")
            .or_else(|| {
                line.strip_prefix(
                    "exits: per op, between markers for the hypervisor's trace (backend ",
                )
            });
        if let Some(rest) = banner {
            // xenconsoled's log ends lines with "\r\n".
            boot.backend = rest.trim_end().trim_end_matches(')').to_string();
            continue;
        }
        if line.contains(" skipped: ") || line.starts_with("exits skipped") {
            boot.skipped
                .push(line.trim_start_matches("exits ").to_string());
            continue;
        }
        let Some(key) = field(line, "key") else {
            continue;
        };
        if line.starts_with("exits served ") {
            if let Some(step) = field(line, "step") {
                served.push((key, step));
            }
            continue;
        }
        let number = |k: &str| field(line, k).and_then(|v| v.parse::<u64>().ok());
        let kinds: Option<Vec<u64>> = KINDS.iter().map(|k| number(k)).collect();
        if let (Some(all), Some(kinds), Some(to_vmm), Some(pv_eoi), Some(most)) = (
            number("all"),
            kinds,
            number("to_vmm"),
            number("pv_eoi"),
            number("most"),
        ) {
            let kinds = [kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]];
            boot.counts.insert(
                key.to_string(),
                ExitCount {
                    all,
                    kinds,
                    to_vmm,
                    pv_eoi,
                    rdtsc: number("rdtsc"),
                    privop: number("privop"),
                    most,
                    vmm,
                    served: None,
                },
            );
        }
    }
    for (key, step) in served {
        if let Some(c) = boot.counts.get_mut(key) {
            c.served = Some(step.to_string());
        }
    }
    boot
}

/// Every boot's counts, merged.
pub struct ExitTable {
    /// Exits by key.
    pub counts: BTreeMap<String, ExitCount>,
    /// What could not be measured, and why (`<vmm>: <key> skipped: …`).
    pub skipped: Vec<String>,
    /// The same measurement on the real Xen 4.17, by boot (`xen`: the Xen
    /// backend; `xen-viridian`: the Hyper-V backend on Xen's Hyper-V
    /// emulation; `xen-pv`: the Xen PV backend in a PV domU, counted as
    /// entries into Xen), the PVH boots each with its own local APIC and
    /// native rows: kept apart, since another hypervisor counted them (its
    /// own trace, under TCG), and its exits differ from KVM's where it
    /// handles a device or a register itself (port 0x80, the local APIC).
    pub real_xen: BTreeMap<&'static str, ExitBoot>,
}

impl ExitTable {
    /// The exits of `key`, if measured.
    pub fn all(&self, key: &str) -> Option<u64> {
        self.counts.get(key).map(|c| c.all)
    }
}

/// Whether exits can be counted here: pvi-exit-counter opens KVM's
/// tracepoints on itself (mounting tracefs if it must).
fn countable(counter: &Path) -> Result<(), String> {
    let out = std::process::Command::new(counter)
        .arg("--check")
        .output()
        .map_err(|e| format!("{}: {e}", counter.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Boot the kernel's `exits` word under each VMM that can count and merge
/// what they counted: QEMU+KVM in x2APIC and in xAPIC mode (KVM's ops,
/// the native lowering, the emulated hardware), pvi-sim for the other
/// hypervisors' ops.
pub fn measure(kernel: &Path) -> Result<ExitTable, String> {
    let sim = crate::qemu::build_sim()?;
    let counter = sim.with_file_name("pvi-exit-counter");
    countable(&counter)?;
    let mut table = ExitTable {
        counts: BTreeMap::new(),
        skipped: Vec::new(),
        real_xen: BTreeMap::new(),
    };
    for x2apic in [true, false] {
        let boot = qemu_boot(kernel, &counter, x2apic)?;
        let mode = if x2apic { "x2apic" } else { "xapic" };
        for (key, count) in boot.counts {
            let key = match key.strip_suffix("/native/static") {
                Some(op) if !x2apic => format!("{op}/native/static-{mode}"),
                _ => key,
            };
            // The xAPIC boot adds only what differs by APIC mode.
            if x2apic || key.contains("xapic") {
                table.counts.insert(key, count);
            }
        }
        if x2apic {
            table
                .skipped
                .extend(boot.skipped.iter().map(|s| format!("qemu-kvm: {s}")));
        }
    }
    for personality in SIM_PERSONALITIES {
        let boot = sim_boot(kernel, personality)?;
        let own = format!("/{}/runtime", boot.backend);
        for (key, count) in boot.counts {
            if key.ends_with(&own) {
                table.counts.insert(key, count);
            }
        }
        table.skipped.extend(
            boot.skipped
                .iter()
                .filter(|s| s.contains(&own))
                .map(|s| format!("pvi-sim: {s}")),
        );
    }
    for (label, viridian) in [("xen", false), ("xen-viridian", true)] {
        let boot = xen_boot(kernel, viridian)?;
        table.real_xen.insert(label, boot);
    }
    table.real_xen.insert("xen-pv", xen_pv_boot(kernel)?);
    Ok(table)
}

/// The kernel as a PVH domU of the real Xen 4.17 (QEMU TCG, a Linux dom0),
/// 4 vCPUs, its calls bracketed by CPUID markers that Xen's trace records
/// (`exits.markers`); the dom0 counts the exits between them. With
/// `viridian`, Xen's Hyper-V emulation and the Hyper-V backend.
fn xen_boot(kernel: &Path, viridian: bool) -> Result<ExitBoot, String> {
    let label = if viridian { "xen-viridian" } else { "xen" };
    println!("==> counting exits under the real Xen 4.17 ({label}, by xentrace)");
    let cmdline = if viridian {
        "exits exits.markers pvi.backend=hyperv console.e9"
    } else {
        "exits exits.markers"
    };
    let boot = Boot {
        kernel,
        accel: Accel::XenPvh { viridian },
        smp: 4,
        cpu_extra: "",
        cmdline,
        vm_args: &[],
    };
    // A domU ends by powering itself off; its dom0 then powers QEMU off.
    read_boot(&boot, label, "xen-4.17", EXIT_POWERED_OFF, &|_| Ok(None))
}

/// The kernel as a 64-bit PV domU of the same Xen, 4 vCPUs: its entries
/// into Xen (hypercalls, emulated privileged instructions, faults) between
/// marker hypercalls, which Xen's PV trace records.
fn xen_pv_boot(kernel: &Path) -> Result<ExitBoot, String> {
    println!("==> counting entries into the real Xen 4.17 (xen-pv, by xentrace)");
    let boot = Boot {
        kernel,
        accel: Accel::XenPv,
        smp: 4,
        cpu_extra: "",
        cmdline: "exits exits.markers",
        vm_args: &[],
    };
    read_boot(&boot, "xen-pv", "xen-4.17", EXIT_POWERED_OFF, &|_| Ok(None))
}

/// Boot, keep the serial log in `target/bench/exits-<label>.log`, and read
/// the counts of a boot that ended with `success`.
fn read_boot(
    boot: &Boot,
    label: &str,
    vmm: &'static str,
    success: i32,
    helper: &dyn Fn(u32) -> Result<Option<std::process::Child>, String>,
) -> Result<ExitBoot, String> {
    let log = format!("target/bench/exits-{label}.log");
    match boot.captured_beside(Path::new(&log), Duration::from_secs(900), helper) {
        Ok((Some(code), serial, _)) if code == success => {
            let parsed = parse(vmm, &serial);
            if parsed.counts.is_empty() {
                return Err(format!("the exits boot {label} counted nothing; see {log}"));
            }
            Ok(parsed)
        }
        Ok((code, _, _)) => Err(format!(
            "the exits boot {label} ended with {code:?}; see {log}"
        )),
        Err(e) => Err(e),
    }
}

/// The kernel under QEMU+KVM with 4 vCPUs, guest RAM in a shared file
/// and pvi-exit-counter beside QEMU.
fn qemu_boot(kernel: &Path, counter: &Path, x2apic: bool) -> Result<ExitBoot, String> {
    let mode = if x2apic { "x2apic" } else { "xapic" };
    println!("==> counting exits under QEMU+KVM ({mode})");
    let ram = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join("target/bench/guest-ram");
    let _ = std::fs::remove_file(&ram);
    let backend = format!(
        "memory-backend-file,id=ram,size=256M,mem-path={},share=on",
        ram.display()
    );
    let vm_args = [
        "-name",
        "pvi,debug-threads=on",
        "-object",
        &backend,
        "-machine",
        "memory-backend=ram",
    ];
    let no_hypercalls = crate::probe::kvm_hypercalls_cached(kernel) != Some(true);
    let cmdline = format!(
        "exits exits.mailbox={MAILBOX}{}",
        if no_hypercalls {
            " bench.no-hypercalls"
        } else {
            ""
        }
    );
    let boot = Boot {
        kernel,
        accel: Accel::Kvm,
        smp: 4,
        cpu_extra: if x2apic { "" } else { ",-x2apic" },
        cmdline: &cmdline,
        vm_args: &vm_args,
    };
    let helper = |pid: u32| {
        std::process::Command::new(counter)
            .args(["--qemu-pid", &pid.to_string(), "--mailbox", MAILBOX])
            .arg("--memory")
            .arg(&ram)
            .spawn()
            .map(Some)
            .map_err(|e| format!("{}: {e}", counter.display()))
    };
    let parsed = read_boot(
        &boot,
        &format!("qemu-kvm-{mode}"),
        "qemu-kvm",
        EXIT_SUCCESS,
        &helper,
    );
    let _ = std::fs::remove_file(&ram);
    parsed
}

/// The kernel under pvi-sim presenting `personality`, with 4 vCPUs.
fn sim_boot(kernel: &Path, personality: &'static str) -> Result<ExitBoot, String> {
    println!("==> counting exits under pvi-sim ({personality})");
    let cmdline = format!("exits exits.mailbox={MAILBOX}");
    let boot = Boot {
        kernel,
        accel: Accel::Sim(personality),
        smp: 4,
        cpu_extra: "",
        cmdline: &cmdline,
        vm_args: &["--exit-mailbox", MAILBOX],
    };
    read_boot(
        &boot,
        &format!("sim-{personality}"),
        "pvi-sim",
        EXIT_SUCCESS,
        &|_| Ok(None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_counts_and_reasons() {
        let serial = "exits: per op, counted by the host (backend xen)\n\
            exits key=clock_ns/xen/runtime all=0 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=0\n\
            exits served key=clock_ns/xen/runtime step=1\n\
            exits key=send_ipi/kvm/runtime skipped: served by a hypercall\n\
            ....exits key=console_write/xen/runtime all=1 io=0 mmio=0 msr=0 cpuid=0 hypercall=1 to_vmm=1 pv_eoi=0 most=2\n\
            exits served key=console_write/xen/runtime step=native\n\
            exits key=pit all=3 io=3 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=3\n";
        let b = parse("pvi-sim", serial);
        assert_eq!(b.backend, "xen");
        assert_eq!(b.counts.len(), 3);
        assert_eq!(b.counts["pit"].kinds, [3, 0, 0, 0, 0]);
        assert_eq!(b.counts["console_write/xen/runtime"].most, 2);
        assert_eq!(b.counts["console_write/xen/runtime"].to_vmm, 1);
        assert_eq!(
            b.counts["clock_ns/xen/runtime"].served.as_deref(),
            Some("1")
        );
        assert_eq!(
            b.counts["console_write/xen/runtime"].served.as_deref(),
            Some("native")
        );
        assert_eq!(b.counts["pit"].served, None);
        assert_eq!(
            b.skipped,
            ["key=send_ipi/kvm/runtime skipped: served by a hypercall"]
        );
    }

    /// The real Xen: the guest's lines (markers, `served`) first, through
    /// Xen's console, then the counts its dom0 made from the trace.
    #[test]
    fn counts_made_after_the_run_still_get_their_served_step() {
        let serial = "(d1) exits: per op, between markers for the hypervisor's trace (backend hyperv)\r\n\
            (d1) exits marks key=eoi/hyperv/runtime at=3,5\n\
            (d1) exits served key=eoi/hyperv/runtime step=1\n\
            pvi-xentrace-exits: 900 records, 2 markers on CPU 3, 1 keys\n\
            exits key=eoi/hyperv/runtime all=0 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1\n";
        let b = parse("xen-4.17", serial);
        assert_eq!(b.backend, "hyperv");
        assert_eq!(b.counts["eoi/hyperv/runtime"].all, 0);
        assert_eq!(b.counts["eoi/hyperv/runtime"].served.as_deref(), Some("1"));
    }
}
