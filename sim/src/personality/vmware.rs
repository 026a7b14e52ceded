//! The `vmware` personality: the "VMwareVMware" signature, the timing leaf
//! 0x4000_0010, and the backdoor at port 0x5658 (`in eax, dx` with eax =
//! BDOOR_MAGIC, ecx = command), answering the commands pvi uses. Others
//! get eax = 0xffffffff, which guests read as "not supported".

use kvm_bindings::{kvm_cpuid_entry2, kvm_regs};
use pvi_sdk::generated::vmware::{
    BDOOR_CMD_GETHZ, BDOOR_CMD_GETTIMEFULL, BDOOR_CMD_GETVERSION, BDOOR_CMD_GET_VCPU_INFO,
    BDOOR_MAGIC, CPUID_VMWARE_FEATURES_LEAF, CPUID_VMWARE_INFO_LEAF,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// KVM's local APIC timer counts at 1 GHz.
const APIC_BUS_KHZ: u32 = 1_000_000;
/// What GETVERSION reports: backdoor protocol version 6, product "ESX" (2).
const BACKDOOR_VERSION: u32 = 6;
const VMX_TYPE_ESX: u32 = 2;
/// GETTIMEFULL's bound on how far the host clock may lag, in microseconds.
const MAX_TIME_LAG_US: u32 = 1_000_000;

/// The VMware leaves for a vCPU whose TSC runs at `tsc_khz`. The features
/// word (ecx) is 0: the backdoor is entered with `in`, not vmcall.
pub fn cpuid_leaves(tsc_khz: u32) -> Vec<kvm_cpuid_entry2> {
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    vec![
        kvm_cpuid_entry2 {
            function: CPUID_VMWARE_INFO_LEAF,
            eax: CPUID_VMWARE_FEATURES_LEAF,
            ebx: word(b"VMwa"),
            ecx: word(b"reVM"),
            edx: word(b"ware"),
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: CPUID_VMWARE_FEATURES_LEAF,
            eax: tsc_khz,
            ebx: APIC_BUS_KHZ,
            ..Default::default()
        },
    ]
}

/// Answer one backdoor `in`: update `regs` (all but eax) and return eax.
pub fn backdoor(regs: &mut kvm_regs, tsc_khz: u32) -> u32 {
    if regs.rax as u32 != BDOOR_MAGIC {
        return u32::MAX;
    }
    let set = |r: &mut u64, v: u32| *r = (*r & !0xffff_ffff) | u64::from(v);
    match regs.rcx & 0xffff {
        BDOOR_CMD_GETVERSION => {
            set(&mut regs.rbx, BDOOR_MAGIC);
            set(&mut regs.rcx, VMX_TYPE_ESX);
            BACKDOOR_VERSION
        }
        BDOOR_CMD_GETHZ => {
            let hz = u64::from(tsc_khz) * 1000;
            set(&mut regs.rbx, (hz >> 32) as u32);
            set(&mut regs.rcx, APIC_BUS_KHZ.saturating_mul(1000));
            hz as u32
        }
        BDOOR_CMD_GETTIMEFULL => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            set(&mut regs.rbx, now.subsec_micros());
            set(&mut regs.rcx, MAX_TIME_LAG_US);
            set(&mut regs.rdx, now.as_secs() as u32);
            set(&mut regs.rsi, (now.as_secs() >> 32) as u32);
            BDOOR_MAGIC
        }
        // No flags: in particular the reserved bit 31 is clear, which says
        // the answer is meaningful.
        BDOOR_CMD_GET_VCPU_INFO => 0,
        _ => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(command: u64) -> (u32, kvm_regs) {
        let mut regs = kvm_regs {
            rax: u64::from(BDOOR_MAGIC),
            rcx: command,
            rdx: 0x5658,
            ..Default::default()
        };
        let eax = backdoor(&mut regs, 2_500_000);
        (eax, regs)
    }

    #[test]
    fn getversion_echoes_the_magic() {
        let (eax, regs) = call(BDOOR_CMD_GETVERSION);
        assert_eq!((eax, regs.rbx as u32), (BACKDOOR_VERSION, BDOOR_MAGIC));
    }

    #[test]
    fn gethz_is_the_tsc_in_hz_across_two_registers() {
        let (eax, regs) = call(BDOOR_CMD_GETHZ);
        assert_eq!(u64::from(eax) | (regs.rbx << 32), 2_500_000_000);
    }

    #[test]
    fn gettimefull_is_now() {
        let (eax, regs) = call(BDOOR_CMD_GETTIMEFULL);
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let secs = (regs.rsi << 32) | (regs.rdx & 0xffff_ffff);
        assert_eq!(eax, BDOOR_MAGIC);
        assert!(host.abs_diff(secs) <= 1, "{secs} vs {host}");
    }

    #[test]
    fn without_the_magic_or_for_unknown_commands_nothing() {
        let mut regs = kvm_regs {
            rax: 1,
            rcx: BDOOR_CMD_GETVERSION,
            ..Default::default()
        };
        assert_eq!(backdoor(&mut regs, 1), u32::MAX);
        assert_eq!(call(9999).0, u32::MAX);
    }
}
