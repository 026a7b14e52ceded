//! The example kernel's `bench` word, booted and read: ticks per call of
//! the hot ops (raw instruction, compile-time backend, run-time backend)
//! and of each clock, and the ratios the project promises.

use crate::qemu::{self, Accel, Boot, EXIT_SUCCESS};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The forms a hot op is measured in, in the reports' column order: the
/// raw instruction, compile time, run time, and its call site before and
/// after patching.
pub const FORMS: [&str; 5] = ["raw", "static", "runtime", "unpatched", "patched"];

/// The hot ops the kernel times three ways.
pub const HOT_OPS: &[&str] = &["irq_disable", "irq_enable", "irq_save", "irq_restore"];
/// The emulated timer hardware a kernel would read instead of a
/// paravirtual clock.
const EMULATED_CLOCKS: &[&str] = &["hpet", "pm_timer", "pit"];

/// What one boot measured.
pub struct KernelBench {
    /// The accelerator.
    pub accel: &'static str,
    /// The backend the kernel chose.
    pub backend: String,
    /// Ticks per call by (op, form).
    pub ops: BTreeMap<(String, String), f64>,
    /// Ticks per read by clock (`backend` is the chosen backend's clock_ns).
    pub clocks: BTreeMap<String, f64>,
    /// Ticks per end of interrupt in a real handler: `lapic`, `backend`.
    pub eoi: BTreeMap<String, f64>,
    /// Ticks per IPI to this CPU: `icr`, `backend`.
    pub ipi: BTreeMap<String, f64>,
    /// Ticks to find the TSC frequency: `backend`, `native`.
    pub discovery: BTreeMap<String, f64>,
    /// Ticks per dependent `add`: about 1 where the guest runs natively.
    pub instruction_ticks: Option<f64>,
    /// kvmclock's version-protocol attempts over its reads.
    pub clock_attempts: Option<(u64, u64)>,
    /// Lines saying what could not be measured, and why.
    pub skipped: Vec<String>,
}

/// Ticks per simple instruction above which the guest's code is not
/// running at hardware speed: then an op's cost is its instruction count,
/// and a paravirtual path (many instructions, no exit) can lose to one
/// trapping instruction.
pub const EMULATED_INSTRUCTION_TICKS: f64 = 20.0;

impl KernelBench {
    /// The worst ratio over the hot ops of `form` to the raw instruction.
    pub fn hot_vs_raw(&self, form: &str) -> Option<f64> {
        self.hot_worst(form, |t, raw| t / raw)
    }

    /// The most a hot op of `form` retires beyond its raw instruction, in
    /// a boot that counts instructions (`tcg-icount`).
    pub fn hot_extra(&self, form: &str) -> Option<f64> {
        self.hot_worst(form, |t, raw| t - raw)
    }

    /// Each op and form as `<op>/<backend>/<form>`, with its ticks per call
    /// (in a counting boot, retired instructions per call).
    pub fn per_call(&self) -> BTreeMap<String, f64> {
        self.ops
            .iter()
            .map(|((op, form), t)| (format!("{op}/{}/{form}", self.backend), *t))
            .collect()
    }

    /// Markdown cells of `op` in each of `forms` (`—` where not measured),
    /// for the reports' tables.
    pub fn cells(&self, op: &str, forms: &[&str]) -> String {
        forms
            .iter()
            .map(|form| {
                self.ops
                    .get(&(op.to_string(), form.to_string()))
                    .map_or("—".to_string(), |t| format!("{t:.2}"))
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// The worst `compare(form's ticks, raw ticks)` over the hot ops.
    fn hot_worst(&self, form: &str, compare: impl Fn(f64, f64) -> f64) -> Option<f64> {
        HOT_OPS
            .iter()
            .map(|op| {
                let raw = self.ops.get(&(op.to_string(), "raw".into()))?;
                let other = self.ops.get(&(op.to_string(), form.into()))?;
                (*raw > 0.0).then(|| compare(*other, *raw))
            })
            .collect::<Option<Vec<f64>>>()
            .and_then(|r| r.into_iter().reduce(f64::max))
    }

    /// The worst ratio of a patched call site to the raw instruction, over
    /// the ops that have patchable sites.
    pub fn patched_vs_raw(&self) -> Option<f64> {
        self.hot_vs_raw("patched")
    }

    /// Whether this guest ran far slower than hardware (see
    /// [`EMULATED_INSTRUCTION_TICKS`]).
    pub fn emulated(&self) -> bool {
        self.instruction_ticks
            .is_some_and(|t| t > EMULATED_INSTRUCTION_TICKS)
    }

    /// How many times faster the backend's way is than the hardware's, for
    /// the pair `(hardware, backend)` in `figures`.
    fn speedup(figures: &BTreeMap<String, f64>, hardware: &str) -> Option<f64> {
        let pv = *figures.get("backend")?;
        let hw = *figures.get(hardware)?;
        (pv > 0.0).then(|| hw / pv)
    }

    /// Paravirtual EOI against the local APIC's.
    pub fn eoi_pv_speedup(&self) -> Option<f64> {
        Self::speedup(&self.eoi, "lapic")
    }

    /// The backend's IPI against an ICR write.
    pub fn ipi_pv_speedup(&self) -> Option<f64> {
        Self::speedup(&self.ipi, "icr")
    }

    /// The backend's TSC-frequency discovery against CPUID/PIT.
    pub fn tsc_discovery_pv_speedup(&self) -> Option<f64> {
        Self::speedup(&self.discovery, "native")
    }

    /// How many times faster the backend's clock is than the fastest
    /// emulated timer the machine has.
    pub fn clock_pv_speedup(&self) -> Option<f64> {
        let pv = *self.clocks.get("backend")?;
        let emulated = self.fastest_emulated_clock()?;
        (pv > 0.0).then(|| emulated / pv)
    }

    /// Ticks per read of the fastest emulated timer the machine has.
    pub fn fastest_emulated_clock(&self) -> Option<f64> {
        EMULATED_CLOCKS
            .iter()
            .filter_map(|c| self.clocks.get(*c))
            .copied()
            .reduce(f64::min)
    }
}

/// `key=value` from a `bench` or `exits` line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Read the kernel's `bench` lines.
pub fn parse(accel: &'static str, serial: &str) -> KernelBench {
    let mut bench = KernelBench {
        accel,
        backend: String::new(),
        ops: BTreeMap::new(),
        clocks: BTreeMap::new(),
        eoi: BTreeMap::new(),
        ipi: BTreeMap::new(),
        discovery: BTreeMap::new(),
        instruction_ticks: None,
        clock_attempts: None,
        skipped: Vec::new(),
    };
    for line in serial.lines().filter(|l| l.starts_with("bench ")) {
        if line.contains(" skipped: ") {
            bench
                .skipped
                .push(line.trim_start_matches("bench ").to_string());
            continue;
        }
        if let (Some(a), Some(r)) = (field(line, "attempts"), field(line, "reads")) {
            if let (Ok(a), Ok(r)) = (a.parse(), r.parse()) {
                bench.clock_attempts = Some((a, r));
            }
            continue;
        }
        let Some(ticks) = field(line, "ticks").and_then(|t| t.parse::<f64>().ok()) else {
            continue;
        };
        if field(line, "instruction").is_some() {
            bench.instruction_ticks = Some(ticks);
            continue;
        }
        if let Some(way) = field(line, "eoi") {
            bench.eoi.insert(way.into(), ticks);
            continue;
        }
        if let Some(way) = field(line, "ipi") {
            bench.ipi.insert(way.into(), ticks);
            continue;
        }
        if field(line, "discovery").is_some() {
            if let Some(form) = field(line, "form") {
                bench.discovery.insert(form.into(), ticks);
            }
            continue;
        }
        if let (Some(op), Some(form)) = (field(line, "op"), field(line, "form")) {
            bench.ops.insert((op.into(), form.into()), ticks);
        } else if let Some(clock) = field(line, "clock") {
            if let Some(name) = field(line, "name") {
                bench.backend = name.to_string();
            }
            bench.clocks.insert(clock.into(), ticks);
        }
    }
    bench
}

/// QEMU's options that make TCG count instructions: one virtual
/// nanosecond, and so one guest TSC tick, per retired instruction, however
/// loaded the host is.
pub const ICOUNT: &[&str] = &["-icount", "shift=0,align=off,sleep=off"];

/// Boot the release kernel with `bench` under TCG counting instructions:
/// its ticks per call are then retired instructions per call.
pub fn boot_counting(kernel: &Path) -> Result<KernelBench, String> {
    boot_with(kernel, Accel::Tcg, ICOUNT, "tcg-icount")
}

/// Boot the release kernel with `bench` under `accel` and read it.
pub fn boot(kernel: &Path, accel: Accel) -> Result<KernelBench, String> {
    boot_with(kernel, accel, &[], accel.name())
}

fn boot_with(
    kernel: &Path,
    accel: Accel,
    vm_args: &[&str],
    label: &'static str,
) -> Result<KernelBench, String> {
    // Under KVM, hypercalls may never return (nested KVM): the bench then
    // skips the ones it would make, saying why.
    let cmdline = if accel == Accel::Kvm
        && crate::probe::kvm_hypercalls_cached(kernel) != Some(true)
    {
        println!("xtask bench: a KVM vmcall does not return here (or could not be told): passing bench.no-hypercalls");
        "bench bench.no-hypercalls"
    } else {
        "bench"
    };
    let boot = Boot {
        kernel,
        accel,
        smp: 1,
        cpu_extra: "",
        cmdline,
        vm_args,
    };
    let log = format!("target/bench/kernel-{label}.log");
    match boot.captured(Path::new(&log), Duration::from_secs(600)) {
        Ok((Some(EXIT_SUCCESS), serial, _)) => Ok(parse(label, &serial)),
        Ok((code, _, _)) => Err(format!(
            "the bench boot under {} ended with {code:?}; see {log}",
            accel.name()
        )),
        Err(e) => Err(e),
    }
}

/// The release kernel, built (with every backend).
pub fn kernel() -> Result<std::path::PathBuf, String> {
    qemu::provision()?;
    qemu::build_kernel(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_figures_and_ratios() {
        let serial = "bench: TSC ticks per call\n\
            bench op=irq_disable form=raw ticks=2.00\n\
            bench op=irq_disable form=runtime ticks=2.10\n\
            bench op=irq_disable form=static ticks=2.00\n\
            bench op=irq_enable form=raw ticks=4.00\n\
            bench op=irq_enable form=runtime ticks=4.00\n\
            bench op=irq_enable form=static ticks=4.00\n\
            bench op=irq_save form=raw ticks=1.00\n\
            bench op=irq_save form=runtime ticks=1.00\n\
            bench op=irq_save form=static ticks=1.00\n\
            bench op=irq_restore form=raw ticks=1.00\n\
            bench op=irq_restore form=runtime ticks=1.00\n\
            bench op=irq_restore form=static ticks=1.00\n\
            bench clock=backend name=kvm ticks=10.00\n\
            bench clock=hpet ticks=1000.00\n\
            bench clock=pit ticks=3000.00\n\
            bench clock=pm_timer skipped: the FADT names no PM timer port\n\
            bench instruction=add ticks=1.50\n\
            bench clock=backend attempts=1000 reads=1000\n\
            bench eoi=lapic name=kvm ticks=900.00\n\
            bench eoi=backend name=kvm ticks=30.00\n\
            bench ipi=icr ticks=1000.00\n\
            bench ipi=backend skipped: served by a hypercall\n\
            bench discovery=tsc_hz form=backend name=kvm ticks=50.00\n\
            bench discovery=tsc_hz form=native ticks=5000.00\n";
        let b = parse("kvm", serial);
        assert_eq!(b.backend, "kvm");
        assert!((b.hot_vs_raw("runtime").unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(b.hot_vs_raw("static"), Some(1.0));
        assert_eq!(b.clock_pv_speedup(), Some(100.0));
        assert_eq!(b.skipped.len(), 2);
        assert_eq!(b.instruction_ticks, Some(1.5));
        assert!(!b.emulated());
        assert_eq!(b.clock_attempts, Some((1000, 1000)));
        assert_eq!(b.eoi_pv_speedup(), Some(30.0));
        assert_eq!(b.ipi_pv_speedup(), None, "skipped, not zero");
        assert_eq!(b.tsc_discovery_pv_speedup(), Some(100.0));
        // In a counting boot the same figures are instructions per call.
        assert!((b.hot_extra("runtime").unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(b.hot_extra("static"), Some(0.0));
        assert_eq!(b.hot_extra("patched"), None, "no patched figures");
        assert_eq!(b.per_call()["irq_disable/kvm/runtime"], 2.1);
    }
}
