//! The example kernel's `bench` word, booted and read: ticks per call of
//! the hot ops (raw instruction, compile-time backend, run-time backend)
//! and of each clock, and the ratios the project promises.

use crate::qemu::{self, Accel, Boot, EXIT_SUCCESS};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

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
    /// Lines saying what could not be measured, and why.
    pub skipped: Vec<String>,
}

impl KernelBench {
    /// The worst ratio over the hot ops of `form` to the raw instruction.
    pub fn hot_vs_raw(&self, form: &str) -> Option<f64> {
        HOT_OPS
            .iter()
            .map(|op| {
                let raw = self.ops.get(&(op.to_string(), "raw".into()))?;
                let other = self.ops.get(&(op.to_string(), form.into()))?;
                (*raw > 0.0).then(|| other / raw)
            })
            .collect::<Option<Vec<f64>>>()
            .and_then(|r| r.into_iter().reduce(f64::max))
    }

    /// The worst ratio of a patched call site to the raw instruction, over
    /// the ops that have patchable sites.
    pub fn patched_vs_raw(&self) -> Option<f64> {
        ["irq_disable", "irq_enable"]
            .iter()
            .map(|op| {
                let raw = self.ops.get(&(op.to_string(), "raw".into()))?;
                let patched = self.ops.get(&(op.to_string(), "patched".into()))?;
                (*raw > 0.0).then(|| patched / raw)
            })
            .collect::<Option<Vec<f64>>>()
            .and_then(|r| r.into_iter().reduce(f64::max))
    }

    /// How many times faster the backend's clock is than the fastest
    /// emulated timer the machine has.
    pub fn clock_pv_speedup(&self) -> Option<f64> {
        let pv = *self.clocks.get("backend")?;
        let emulated = EMULATED_CLOCKS
            .iter()
            .filter_map(|c| self.clocks.get(*c))
            .copied()
            .reduce(f64::min)?;
        (pv > 0.0).then(|| emulated / pv)
    }
}

/// `key=value` from a `bench` line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
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
        skipped: Vec::new(),
    };
    for line in serial.lines().filter(|l| l.starts_with("bench ")) {
        if line.contains(" skipped: ") {
            bench
                .skipped
                .push(line.trim_start_matches("bench ").to_string());
            continue;
        }
        let Some(ticks) = field(line, "ticks").and_then(|t| t.parse::<f64>().ok()) else {
            continue;
        };
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

/// Boot the release kernel with `bench` under `accel` and read it.
pub fn boot(kernel: &Path, accel: Accel) -> Result<KernelBench, String> {
    let boot = Boot {
        kernel,
        accel,
        smp: 1,
        cpu_extra: "",
        cmdline: "bench",
        vm_args: &[],
    };
    let log = format!("target/bench/kernel-{}.log", accel.name());
    match boot.captured(Path::new(&log), Duration::from_secs(600)) {
        Ok((Some(EXIT_SUCCESS), serial, _)) => Ok(parse(accel.name(), &serial)),
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
            bench clock=pm_timer skipped: the FADT names no PM timer port\n";
        let b = parse("kvm", serial);
        assert_eq!(b.backend, "kvm");
        assert!((b.hot_vs_raw("runtime").unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(b.hot_vs_raw("static"), Some(1.0));
        assert_eq!(b.clock_pv_speedup(), Some(100.0));
        assert_eq!(b.skipped.len(), 1);
    }
}
