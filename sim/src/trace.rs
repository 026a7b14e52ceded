//! `--trace`: the guest's exchanges with its hypervisor (MSRs, hypercalls,
//! backdoor commands), decoded with the IDL's names from the SDK's
//! generated tables, one line each on standard error.

use crate::personality::Personality;
use pvi_sdk::generated::{hyperv, kvm, vmware, xen};

/// The IDL's name for `msr` under `personality`.
pub fn msr_name(personality: Personality, msr: u32) -> &'static str {
    let table = match personality {
        Personality::Kvm => kvm::MSRS,
        Personality::Hyperv => hyperv::MSRS,
        Personality::Xen if msr == crate::personality::xen::HYPERCALL_MSR => {
            return "hypercall page MSR (XEN_CPUID_HYPERCALL.ebx)"
        }
        _ => &[],
    };
    lookup(table, msr)
}

/// The IDL's name for hypercall `number` under `personality`.
pub fn hypercall_name(personality: Personality, number: u64) -> &'static str {
    let table = match personality {
        Personality::Kvm => kvm::HYPERCALLS,
        Personality::Xen => xen::HYPERCALLS,
        Personality::Hyperv => hyperv::HYPERCALLS,
        Personality::Vmware => vmware::HYPERCALLS,
        Personality::None => &[],
    };
    lookup(table, number)
}

fn lookup<K: PartialEq + Copy>(table: &[(K, &'static str)], key: K) -> &'static str {
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("(not in the IDL)", |(_, name)| name)
}

/// Print one exchange when tracing is on.
pub fn line(on: bool, vcpu: u32, what: std::fmt::Arguments) {
    if on {
        eprintln!("pvi-sim: vCPU {vcpu}: {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_idl() {
        assert_eq!(
            msr_name(Personality::Hyperv, 0x4000_0021),
            "HV_X64_MSR_REFERENCE_TSC"
        );
        assert_eq!(
            hypercall_name(Personality::Xen, 29),
            "__HYPERVISOR_sched_op"
        );
        assert_eq!(
            hypercall_name(Personality::Vmware, 46),
            "BDOOR_CMD_GETTIMEFULL"
        );
        assert_eq!(
            hypercall_name(Personality::Hyperv, 0xfff),
            "(not in the IDL)"
        );
    }
}
