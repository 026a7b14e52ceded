//! A cost model, not a measurement: what a call would take on a host that
//! runs guest code on hardware virtualization, predicted from what this
//! machine counts exactly (retired instructions under TCG with icount, VM
//! exits by kind) and from published per-exit costs.
//!
//! cycles = instructions × [`CPI`]
//!        + exits × [`IN_KERNEL_EXIT_CYCLES`]
//!        + exits completed in user space × [`USER_SPACE_EXTRA_CYCLES`]
//!
//! Sources, also cited in the book's Performance chapter:
//! - [`IN_KERNEL_EXIT_CYCLES`]: kvm-unit-tests `vmexit` `vmcall`, 1529
//!   cycles on Skylake-SP (Wanpeng Li, "KVM: VMX: Micro-optimize vmexit
//!   time when not exposing PMU", 2020-03-13,
//!   <1584071718-17163-1-git-send-email-wanpengli@tencent.com>). A CPUID
//!   exit measured 1018 cycles in 2024 (Sean Christopherson,
//!   <Z1eXyv2VVsFiw_0i@google.com>); an exit whose port or MMIO access
//!   KVM must also emulate costs more. Both are left out, which lowers
//!   the cost of the emulated hardware the model compares against.
//! - [`USER_SPACE_EXTRA_CYCLES`]: "the cost of exiting to userspace is
//!   13000 cycles on this machine" (Paolo Bonzini, kvm-unit-tests commit
//!   00bfecaaa5a4, "vmexit: time the number of cycles for simple PIO",
//!   2012: `inl_from_qemu` 20574 against `inl_from_kernel` 7237).

use crate::exit_bench::ExitCount;

/// Cycles per retired instruction: 1, a stated assumption (cores of the
/// last decade retire such straight-line code at 1 to 4 per cycle, so
/// this overstates the paravirtual paths, which are all instructions).
pub const CPI: f64 = 1.0;
/// Cycles of one VM exit KVM answers in the kernel, round trip.
pub const IN_KERNEL_EXIT_CYCLES: f64 = 1529.0;
/// Cycles an exit costs beyond that when the VMM completes it in user
/// space.
pub const USER_SPACE_EXTRA_CYCLES: f64 = 13000.0;

/// The predicted cycles of a call that retires `instructions` and exits
/// as `exits` counted.
pub fn cycles(instructions: f64, exits: &ExitCount) -> f64 {
    instructions * CPI
        + exits.all as f64 * IN_KERNEL_EXIT_CYCLES
        + exits.to_vmm as f64 * USER_SPACE_EXTRA_CYCLES
}

/// One side of a comparison, with its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Side {
    /// What is read: `clock_ns/kvm/runtime`, `pit`, …
    pub what: String,
    /// Retired instructions per call (counted under TCG with icount).
    pub instructions: f64,
    /// VM exits per call, and how many of them reach user space.
    pub exits: u64,
    /// Of `exits`, completed in user space.
    pub to_vmm: u64,
    /// The model's cycles.
    pub cycles: f64,
}

impl Side {
    /// A side from its counted inputs.
    pub fn new(what: &str, instructions: f64, exits: &ExitCount) -> Self {
        Self {
            what: what.to_string(),
            instructions,
            exits: exits.all,
            to_vmm: exits.to_vmm,
            cycles: cycles(instructions, exits),
        }
    }

    /// As JSON, inputs and result.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "what": self.what,
            "instructions": self.instructions,
            "exits": self.exits,
            "exits_to_user_space": self.to_vmm,
            "cycles": self.cycles,
        })
    }
}

/// The model's speed-up of `pv` over the cheapest of `hardware`.
pub fn speedup(pv: &Side, hardware: &[Side]) -> Option<(f64, Side)> {
    let cheapest = hardware
        .iter()
        .min_by(|a, b| a.cycles.total_cmp(&b.cycles))?
        .clone();
    (pv.cycles > 0.0).then(|| (cheapest.cycles / pv.cycles, cheapest))
}

/// The model's constants, for the report.
pub fn constants() -> serde_json::Value {
    serde_json::json!({
        "label": "a model, not a measurement: cycles = instructions × CPI + exits × in-kernel exit cycles + exits completed in user space × extra cycles",
        "cpi": CPI,
        "in_kernel_exit_cycles": IN_KERNEL_EXIT_CYCLES,
        "in_kernel_exit_source": "kvm-unit-tests vmexit vmcall, 1529 cycles, Skylake-SP (Wanpeng Li, 2020-03-13, <1584071718-17163-1-git-send-email-wanpengli@tencent.com>)",
        "user_space_extra_cycles": USER_SPACE_EXTRA_CYCLES,
        "user_space_extra_source": "\"the cost of exiting to userspace is 13000 cycles on this machine\" (Paolo Bonzini, kvm-unit-tests commit 00bfecaaa5a4, 2012)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exits(all: u64, to_vmm: u64) -> ExitCount {
        ExitCount {
            all,
            kinds: [all, 0, 0, 0, 0],
            to_vmm,
            pv_eoi: 0,
            rdtsc: None,
            privop: None,
            most: all,
            vmm: "test",
            served: None,
        }
    }

    #[test]
    fn exits_dominate_and_user_space_costs_more() {
        assert_eq!(cycles(60.0, &exits(0, 0)), 60.0);
        assert_eq!(cycles(10.0, &exits(3, 0)), 10.0 + 3.0 * 1529.0);
        assert_eq!(cycles(10.0, &exits(1, 1)), 10.0 + 1529.0 + 13000.0);
    }

    #[test]
    fn the_speedup_is_against_the_cheapest_hardware() {
        let pv = Side::new("clock_ns/kvm/runtime", 50.0, &exits(0, 0));
        let pit = Side::new("pit", 20.0, &exits(3, 0));
        let hpet = Side::new("hpet", 5.0, &exits(1, 1));
        let (s, cheapest) = speedup(&pv, &[hpet, pit.clone()]).unwrap();
        assert_eq!(cheapest, pit);
        assert!((s - (20.0 + 3.0 * 1529.0) / 50.0).abs() < 1e-9);
        assert_eq!(speedup(&pv, &[]), None);
    }
}
