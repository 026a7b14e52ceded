//! The CPUID a personality presents: what KVM supports on this host, with
//! the hypervisor bit and the 0x4000_0000 leaves replaced by the
//! personality's.

use crate::fault::{Fault, Garbage};
use crate::personality::Personality;
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

/// CPUID.1:ECX bit 31: "running under a hypervisor".
const HYPERVISOR_BIT: u32 = 1 << 31;
const HYPERVISOR_LEAVES: std::ops::RangeInclusive<u32> = 0x4000_0000..=0x4fff_ffff;

/// The CPUID table of vCPU `apic_id` of `cpus`, whose TSC runs at
/// `tsc_khz`, under `personality`.
pub fn for_personality(
    kvm: &Kvm,
    personality: Personality,
    apic_id: u32,
    tsc_khz: u32,
    cpus: u32,
    fault: Option<Fault>,
) -> Result<CpuId, String> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
    let mut entries: Vec<_> = supported
        .as_slice()
        .iter()
        .copied()
        .filter(|e| !HYPERVISOR_LEAVES.contains(&e.function))
        .collect();
    let mut leaves = personality.cpuid_leaves(supported.as_slice(), tsc_khz, apic_id, cpus);
    match fault {
        Some(Fault::CpuidGarbage) => {
            let mut garbage = Garbage::default();
            for e in &mut leaves {
                for r in [&mut e.eax, &mut e.ebx, &mut e.ecx, &mut e.edx] {
                    *r = garbage.next().unwrap_or(0);
                }
            }
        }
        Some(Fault::AbsurdMaxLeaf) => {
            if let Some(first) = leaves.iter_mut().find(|e| e.function == 0x4000_0000) {
                first.eax = u32::MAX;
            }
        }
        Some(Fault::Viridian) => crate::personality::hyperv::as_viridian(&mut leaves),
        Some(Fault::XenVersion3_0) => {
            // XEN_CPUID_VERSION: major << 16 | minor.
            if let Some(version) = leaves.iter_mut().find(|e| e.function == 0x4000_0001) {
                version.eax = 3 << 16;
            }
        }
        _ => {}
    }
    for e in &mut entries {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x00ff_ffff) | (apic_id << 24);
                if leaves.is_empty() {
                    e.ecx &= !HYPERVISOR_BIT;
                } else {
                    e.ecx |= HYPERVISOR_BIT;
                }
            }
            0xb | 0x1f => e.edx = apic_id,
            _ => {}
        }
    }
    entries.extend(leaves);
    CpuId::from_entries(&entries).map_err(|e| format!("building the CPUID table: {e:?}"))
}
