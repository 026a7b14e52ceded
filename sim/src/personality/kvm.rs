//! The `kvm` personality: KVM's signature and the paravirtual features that
//! in-kernel KVM serves by itself here (kvmclock, steal time, PV EOI,
//! the no-op io_delay). Features that need a hypercall (PV IPI, kick,
//! yield, PV TLB flush) are left out: a `vmcall` never completes on nested
//! KVM, and pvi-sim does not see it.

use kvm_bindings::kvm_cpuid_entry2;
use pvi_sdk::generated::kvm::{KvmFeatures, KVM_CPUID_FEATURES, KVM_CPUID_SIGNATURE};

/// The features offered, where the host's KVM supports them.
fn offered() -> KvmFeatures {
    KvmFeatures::KVM_FEATURE_CLOCKSOURCE
        | KvmFeatures::KVM_FEATURE_NOP_IO_DELAY
        | KvmFeatures::KVM_FEATURE_CLOCKSOURCE2
        | KvmFeatures::KVM_FEATURE_STEAL_TIME
        | KvmFeatures::KVM_FEATURE_PV_EOI
        | KvmFeatures::KVM_FEATURE_CLOCKSOURCE_STABLE_BIT
}

/// The KVM leaves, given what the host's KVM reports as supported.
pub fn cpuid_leaves(supported: &[kvm_cpuid_entry2]) -> Vec<kvm_cpuid_entry2> {
    let host = supported
        .iter()
        .find(|e| e.function == KVM_CPUID_FEATURES)
        .map_or(0, |e| e.eax);
    let signature = *b"KVMKVMKVM\0\0\0";
    let word = |i: usize| {
        u32::from_le_bytes([
            signature[i],
            signature[i + 1],
            signature[i + 2],
            signature[i + 3],
        ])
    };
    vec![
        kvm_cpuid_entry2 {
            function: KVM_CPUID_SIGNATURE,
            eax: KVM_CPUID_FEATURES,
            ebx: word(0),
            ecx: word(4),
            edx: word(8),
            ..Default::default()
        },
        kvm_cpuid_entry2 {
            function: KVM_CPUID_FEATURES,
            eax: host & offered().bits(),
            ..Default::default()
        },
    ]
}
