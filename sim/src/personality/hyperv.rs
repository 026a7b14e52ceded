//! The `hyperv` personality: the "Microsoft Hv" signature and "Hv#1"
//! interface, and the synthetic MSRs behind the features it announces:
//! guest OS id, the hypercall page, VP index, the partition reference
//! counter and reference TSC page, the TSC and APIC frequencies, and the
//! crash MSRs. Hypercalls go through the page pvi-sim fills: `out` to
//! [`HYPERCALL_PORT`](crate::personality::HYPERCALL_PORT) (the registers
//! intact), then `ret`.
//!
//! Not announced yet: SynIC, synthetic timers, the APIC MSRs, and the
//! recommendations that make guests use the IPI and flush hypercalls.

use crate::fault::Fault;
use crate::personality::{leaf, HYPERCALL_PORT};
use kvm_bindings::kvm_cpuid_entry2;
use pvi_sdk::generated::hyperv::{
    HypervFeatures, HypervMiscFeatures, HVCALL_NOTIFY_LONG_SPIN_WAIT, HV_CRASH_CTL_CRASH_NOTIFY,
    HV_STATUS_INVALID_HYPERCALL_CODE, HV_STATUS_SUCCESS, HV_X64_MSR_APIC_FREQUENCY,
    HV_X64_MSR_CRASH_CTL, HV_X64_MSR_GUEST_OS_ID, HV_X64_MSR_HYPERCALL,
    HV_X64_MSR_HYPERCALL_ENABLE, HV_X64_MSR_REFERENCE_TSC, HV_X64_MSR_TIME_REF_COUNT,
    HV_X64_MSR_TSC_FREQUENCY, HV_X64_MSR_TSC_REFERENCE_ENABLE, HV_X64_MSR_VP_INDEX,
    HYPERV_CPUID_ENLIGHTMENT_INFO, HYPERV_CPUID_FEATURES, HYPERV_CPUID_IMPLEMENT_LIMITS,
    HYPERV_CPUID_INTERFACE, HYPERV_CPUID_VENDOR_AND_MAX_FUNCTIONS, HYPERV_CPUID_VERSION,
};
use std::sync::Mutex;
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The first synthetic MSR, and how many the filter sends to pvi-sim
/// (through the crash MSRs at 0x4000_0100..0x4000_0105).
pub const MSR_BASE: u32 = 0x4000_0000;
/// See [`MSR_BASE`].
pub const MSR_COUNT: u32 = 0x200;
/// KVM's local APIC timer counts at 1 GHz.
const APIC_HZ: u64 = 1_000_000_000;
/// The crash parameter MSRs P0..P4 sit just below CRASH_CTL.
const CRASH_P0: u32 = HV_X64_MSR_CRASH_CTL - 5;
/// `out 0xe7, al; ret`.
const HYPERCALL_CODE: [u8; 3] = [0xe6, HYPERCALL_PORT as u8, 0xc3];

/// What the guest may use.
fn features() -> HypervFeatures {
    HypervFeatures::HV_MSR_TIME_REF_COUNT_AVAILABLE
        | HypervFeatures::HV_MSR_HYPERCALL_AVAILABLE
        | HypervFeatures::HV_MSR_VP_INDEX_AVAILABLE
        | HypervFeatures::HV_MSR_REFERENCE_TSC_AVAILABLE
        | HypervFeatures::HV_ACCESS_FREQUENCY_MSRS
}

fn misc_features() -> HypervMiscFeatures {
    HypervMiscFeatures::HV_FEATURE_FREQUENCY_MSRS_AVAILABLE
        | HypervMiscFeatures::HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE
}

/// The Hyper-V leaves for a machine of `cpus` vCPUs.
pub fn cpuid_leaves(cpus: u32) -> Vec<kvm_cpuid_entry2> {
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    vec![
        leaf(
            HYPERV_CPUID_VENDOR_AND_MAX_FUNCTIONS,
            HYPERV_CPUID_IMPLEMENT_LIMITS,
            word(b"Micr"),
            word(b"osof"),
            word(b"t Hv"),
        ),
        leaf(HYPERV_CPUID_INTERFACE, word(b"Hv#1"), 0, 0, 0),
        // Version 10.0, build 0.
        leaf(HYPERV_CPUID_VERSION, 0, 0x000a_0000, 0, 0),
        leaf(
            HYPERV_CPUID_FEATURES,
            features().bits(),
            0,
            0,
            misc_features().bits(),
        ),
        // No recommendations; never notify about long spin waits.
        leaf(HYPERV_CPUID_ENLIGHTMENT_INFO, 0, u32::MAX, 0, 0),
        leaf(HYPERV_CPUID_IMPLEMENT_LIMITS, cpus, 0, 0, 0),
    ]
}

/// What the guest wrote, shared by its vCPUs.
#[derive(Default)]
struct State {
    guest_os_id: u64,
    hypercall: u64,
    reference_tsc: u64,
    crash: [u64; 5],
}

/// What an MSR write leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing more.
    Done,
    /// The guest reported a crash through HV_X64_MSR_CRASH_CTL.
    Crashed([u64; 5]),
}

/// The partition's synthetic state.
pub struct Hyperv {
    state: Mutex<State>,
    started: Instant,
    tsc_at_start: u64,
    tsc_hz: u64,
    fault: Option<Fault>,
}

impl Hyperv {
    /// A partition whose vCPUs' TSCs run at `tsc_khz` and read
    /// `tsc_at_start` now, when it starts.
    pub fn new(tsc_khz: u32, tsc_at_start: u64, fault: Option<Fault>) -> Hyperv {
        Hyperv {
            state: Mutex::default(),
            started: Instant::now(),
            tsc_at_start,
            tsc_hz: u64::from(tsc_khz) * 1000,
            fault,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An MSR read by vCPU `vp`; `None` raises #GP.
    pub fn read_msr(&self, vp: u32, msr: u32) -> Option<u64> {
        let s = self.state();
        Some(match msr {
            HV_X64_MSR_GUEST_OS_ID => s.guest_os_id,
            HV_X64_MSR_HYPERCALL => s.hypercall,
            HV_X64_MSR_VP_INDEX => u64::from(vp),
            // 100 ns units since the partition started.
            HV_X64_MSR_TIME_REF_COUNT => (self.started.elapsed().as_nanos() / 100) as u64,
            HV_X64_MSR_REFERENCE_TSC => s.reference_tsc,
            HV_X64_MSR_TSC_FREQUENCY => self.tsc_hz,
            HV_X64_MSR_APIC_FREQUENCY => APIC_HZ,
            HV_X64_MSR_CRASH_CTL => HV_CRASH_CTL_CRASH_NOTIFY,
            m if (CRASH_P0..HV_X64_MSR_CRASH_CTL).contains(&m) => s.crash[(m - CRASH_P0) as usize],
            _ => return None,
        })
    }

    /// An MSR write; `Err` raises #GP.
    pub fn write_msr(&self, memory: &GuestMemoryMmap, msr: u32, value: u64) -> Result<Written, ()> {
        let mut s = self.state();
        match msr {
            HV_X64_MSR_GUEST_OS_ID => s.guest_os_id = value,
            HV_X64_MSR_HYPERCALL => {
                // The TLFS: the page can be enabled only once the guest has
                // said who it is.
                if value & HV_X64_MSR_HYPERCALL_ENABLE != 0 {
                    if s.guest_os_id == 0 {
                        return Err(());
                    }
                    let mut page = vec![0xcc_u8; 4096];
                    page[..HYPERCALL_CODE.len()].copy_from_slice(&HYPERCALL_CODE);
                    if self.fault == Some(Fault::HypercallPageEmpty) {
                        page.fill(0);
                    }
                    memory
                        .write_slice(&page, GuestAddress(value & !0xfff))
                        .map_err(|_| ())?;
                }
                s.hypercall = value;
            }
            HV_X64_MSR_REFERENCE_TSC => {
                if value & HV_X64_MSR_TSC_REFERENCE_ENABLE != 0 {
                    memory
                        .write_slice(&self.reference_tsc_page(), GuestAddress(value & !0xfff))
                        .map_err(|_| ())?;
                }
                s.reference_tsc = value;
            }
            HV_X64_MSR_CRASH_CTL => {
                if value & HV_CRASH_CTL_CRASH_NOTIFY != 0 {
                    return Ok(Written::Crashed(s.crash));
                }
            }
            m if (CRASH_P0..HV_X64_MSR_CRASH_CTL).contains(&m) => {
                s.crash[(m - CRASH_P0) as usize] = value;
            }
            _ => return Err(()),
        }
        Ok(Written::Done)
    }

    /// The reference TSC page (`ms_hyperv_tsc_page`): sequence 1, the
    /// 64.64 scale turning TSC ticks into 100 ns units, and the offset that
    /// makes it read 0 at the partition's start, as TIME_REF_COUNT does.
    fn reference_tsc_page(&self) -> Vec<u8> {
        let scale = ((10_000_000u128 << 64) / u128::from(self.tsc_hz.max(1))) as u64;
        let at_start = ((u128::from(self.tsc_at_start) * u128::from(scale)) >> 64) as i64;
        let mut page = vec![0u8; 4096];
        // Sequence 0 means "do not use the page" (the fault).
        let sequence: u32 = if self.fault == Some(Fault::TscPageSequenceZero) {
            0
        } else {
            1
        };
        page[0..4].copy_from_slice(&sequence.to_le_bytes());
        page[8..16].copy_from_slice(&scale.to_le_bytes());
        page[16..24].copy_from_slice(&(-at_start).to_le_bytes());
        page
    }

    /// A hypercall: the control word (rcx) and the input and output GPAs
    /// (rdx, r8); the result for rax.
    pub fn hypercall(&self, control: u64, _input: u64, _output: u64) -> u64 {
        if self.fault == Some(Fault::HypercallsUnsupported) {
            return HV_STATUS_INVALID_HYPERCALL_CODE as u64;
        }
        match control & 0xffff {
            HVCALL_NOTIFY_LONG_SPIN_WAIT => u64::from(HV_STATUS_SUCCESS),
            _ => HV_STATUS_INVALID_HYPERCALL_CODE as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_tsc_scale_turns_a_second_of_ticks_into_ten_million() {
        let hv = Hyperv::new(2_500_000, 0, None);
        let page = hv.reference_tsc_page();
        let scale = u64::from_le_bytes(page[8..16].try_into().unwrap());
        let ticks: u128 = 2_500_000_000;
        let units = (ticks * u128::from(scale)) >> 64;
        assert!((9_999_999..=10_000_000).contains(&units), "{units}");
    }

    #[test]
    fn msrs_and_hypercalls() {
        let hv = Hyperv::new(1_000_000, 0, None);
        assert_eq!(hv.read_msr(3, HV_X64_MSR_VP_INDEX), Some(3));
        assert_eq!(
            hv.read_msr(0, HV_X64_MSR_TSC_FREQUENCY),
            Some(1_000_000_000)
        );
        assert_eq!(hv.read_msr(0, 0x4000_0090), None, "SynIC is not announced");
        assert_eq!(
            hv.hypercall(HVCALL_NOTIFY_LONG_SPIN_WAIT | 1 << 16, 0, 0),
            0
        );
        assert_eq!(
            hv.hypercall(0x0013, 0, 0),
            HV_STATUS_INVALID_HYPERCALL_CODE as u64
        );
    }
}
