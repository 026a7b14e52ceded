//! The `hyperv` personality: the "Microsoft Hv" signature and "Hv#1"
//! interface, and the synthetic MSRs behind the features it announces:
//! guest OS id, the hypercall page, VP index, the partition reference
//! counter and reference TSC page, the TSC and APIC frequencies, and the
//! crash MSRs. Hypercalls go through the page pvi-sim fills: `out` to
//! [`HYPERCALL_PORT`](crate::personality::HYPERCALL_PORT) (the registers
//! intact), then `ret`.
//!
//! Synthetic timer 0 runs in direct mode (its expiry raises the vector
//! the guest configured); message mode needs SynIC, which pvi-sim does not
//! have. HVCALL_SEND_IPI raises the vector on each target;
//! HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE returns once every target vCPU has
//! flushed its TLB ([`crate::kick`]).
//!
//! The APIC MSRs HV_X64_MSR_EOI, ICR and TPR are the local APIC's own
//! registers: pvi-sim writes them through to the in-kernel local APIC's
//! x2APIC MSRs (KVM here has no Hyper-V emulation of its own), so they work
//! while the guest's APIC is in x2APIC mode; in xAPIC mode they raise #GP.
//! HV_X64_MSR_VP_ASSIST_PAGE is kept, but its page is never written: an EOI
//! always goes through the MSR.

use crate::fault::Fault;
use crate::personality::{leaf, HYPERCALL_PORT};
use crate::timers::Timers;
use kvm_bindings::kvm_cpuid_entry2;
use pvi_sdk::generated::hyperv::{
    HypervFeatures, HypervHints, HypervMiscFeatures, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE,
    HVCALL_NOTIFY_LONG_SPIN_WAIT, HVCALL_SEND_IPI, HV_CRASH_CTL_CRASH_NOTIFY,
    HV_FLUSH_ALL_PROCESSORS, HV_HYPERCALL_FAST_BIT, HV_IPI_HIGH_VECTOR, HV_IPI_LOW_VECTOR,
    HV_STATUS_INVALID_HYPERCALL_CODE, HV_STATUS_INVALID_HYPERCALL_INPUT,
    HV_STATUS_INVALID_PARAMETER, HV_STATUS_SUCCESS, HV_X64_MSR_APIC_FREQUENCY,
    HV_X64_MSR_CRASH_CTL, HV_X64_MSR_EOI, HV_X64_MSR_GUEST_OS_ID, HV_X64_MSR_HYPERCALL,
    HV_X64_MSR_HYPERCALL_ENABLE, HV_X64_MSR_ICR, HV_X64_MSR_REFERENCE_TSC,
    HV_X64_MSR_STIMER0_CONFIG, HV_X64_MSR_STIMER0_COUNT, HV_X64_MSR_TIME_REF_COUNT, HV_X64_MSR_TPR,
    HV_X64_MSR_TSC_FREQUENCY, HV_X64_MSR_TSC_REFERENCE_ENABLE, HV_X64_MSR_VP_ASSIST_PAGE,
    HV_X64_MSR_VP_INDEX, HYPERV_CPUID_ENLIGHTMENT_INFO, HYPERV_CPUID_FEATURES,
    HYPERV_CPUID_IMPLEMENT_LIMITS, HYPERV_CPUID_INTERFACE, HYPERV_CPUID_VENDOR_AND_MAX_FUNCTIONS,
    HYPERV_CPUID_VERSION,
};
use pvi_sdk::types::hv_stimer_config;
use std::sync::Mutex;
use std::time::{Duration, Instant};
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

/// The x2APIC MSR behind a Hyper-V APIC MSR: EOI, ICR, TPR.
pub fn x2apic_msr(msr: u32) -> Option<u32> {
    match msr {
        HV_X64_MSR_EOI => Some(0x80b),
        HV_X64_MSR_ICR => Some(0x830),
        HV_X64_MSR_TPR => Some(0x808),
        _ => None,
    }
}

/// What the guest may use.
fn features() -> HypervFeatures {
    HypervFeatures::HV_MSR_TIME_REF_COUNT_AVAILABLE
        | HypervFeatures::HV_MSR_SYNTIMER_AVAILABLE
        | HypervFeatures::HV_MSR_APIC_ACCESS_AVAILABLE
        | HypervFeatures::HV_MSR_HYPERCALL_AVAILABLE
        | HypervFeatures::HV_MSR_VP_INDEX_AVAILABLE
        | HypervFeatures::HV_MSR_REFERENCE_TSC_AVAILABLE
        | HypervFeatures::HV_ACCESS_FREQUENCY_MSRS
}

fn misc_features() -> HypervMiscFeatures {
    HypervMiscFeatures::HV_FEATURE_FREQUENCY_MSRS_AVAILABLE
        | HypervMiscFeatures::HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE
        | HypervMiscFeatures::HV_STIMER_DIRECT_MODE_AVAILABLE
}

/// What the guest should use: the APIC MSRs, the IPI and flush hypercalls.
fn hints() -> HypervHints {
    HypervHints::HV_X64_APIC_ACCESS_RECOMMENDED
        | HypervHints::HV_X64_CLUSTER_IPI_RECOMMENDED
        | HypervHints::HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED
}

/// Xen 4.17's viridian answers to the features and recommendations leaves
/// (HVM_PARAM_VIRIDIAN 0x3fd, on an SVM host; Xen's
/// cpuid_viridian_leaves): privileges for the APIC, hypercall, VP index,
/// frequency, reference counter, reference TSC, SynIC and synthetic timer
/// MSRs; in EDX only the crash MSRs and SINT polling, so no frequency-MSRs
/// bit and no direct-mode timers; and the recommendations a guest gets once
/// its HV_X64_MSR_GUEST_OS_ID passes Xen's OS bar, with 2047 spin retries.
/// (Before that, Xen answers the recommendations leaf with zeros: KVM fixes
/// a vCPU's CPUID at its first run, so this simulator cannot change it
/// later, and plays the answer a well-identified guest reads.)
pub fn as_viridian(leaves: &mut [kvm_cpuid_entry2]) {
    const SINT_POLLING: u32 = 1 << 17;
    for e in leaves.iter_mut() {
        match e.function {
            HYPERV_CPUID_FEATURES => {
                e.eax = (HypervFeatures::HV_MSR_TIME_REF_COUNT_AVAILABLE
                    | HypervFeatures::HV_MSR_SYNIC_AVAILABLE
                    | HypervFeatures::HV_MSR_SYNTIMER_AVAILABLE
                    | HypervFeatures::HV_MSR_APIC_ACCESS_AVAILABLE
                    | HypervFeatures::HV_MSR_HYPERCALL_AVAILABLE
                    | HypervFeatures::HV_MSR_VP_INDEX_AVAILABLE
                    | HypervFeatures::HV_MSR_REFERENCE_TSC_AVAILABLE
                    | HypervFeatures::HV_ACCESS_FREQUENCY_MSRS)
                    .bits();
                e.ebx = 0;
                e.edx =
                    HypervMiscFeatures::HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE.bits() | SINT_POLLING;
            }
            HYPERV_CPUID_ENLIGHTMENT_INFO => {
                e.eax = (hints() | HypervHints::HV_X64_RELAXED_TIMING_RECOMMENDED).bits();
                e.ebx = 2047;
            }
            _ => {}
        }
    }
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
        // Never notify about long spin waits (ebx).
        leaf(
            HYPERV_CPUID_ENLIGHTMENT_INFO,
            hints().bits(),
            u32::MAX,
            0,
            0,
        ),
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
    /// Per vCPU: synthetic timer 0's configuration and count.
    stimer: Vec<(u64, u64)>,
    /// Per vCPU: HV_X64_MSR_VP_ASSIST_PAGE.
    vp_assist: Vec<u64>,
}

/// What an MSR write leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Nothing more.
    Done,
    /// The guest reported a crash through HV_X64_MSR_CRASH_CTL.
    Crashed([u64; 5]),
}

/// What a hypercall leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Return this status (rax).
    Status(u64),
    /// Flush the TLBs of these VPs (bit n: VP n), then return success.
    Flush(u64),
}

/// The partition's synthetic state.
pub struct Hyperv {
    state: Mutex<State>,
    timers: Timers,
    cpus: u32,
    started: Instant,
    tsc_at_start: u64,
    tsc_hz: u64,
    fault: Option<Fault>,
}

impl Hyperv {
    /// A partition of `cpus` vCPUs whose TSCs run at `tsc_khz` and read
    /// `tsc_at_start` now, when it starts.
    pub fn new(cpus: u32, tsc_khz: u32, tsc_at_start: u64, fault: Option<Fault>) -> Hyperv {
        Hyperv {
            state: Mutex::new(State {
                stimer: vec![(0, 0); cpus as usize],
                vp_assist: vec![0; cpus as usize],
                ..State::default()
            }),
            timers: Timers::new(cpus),
            cpus,
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
            HV_X64_MSR_STIMER0_CONFIG => s.stimer.get(vp as usize)?.0,
            HV_X64_MSR_STIMER0_COUNT => s.stimer.get(vp as usize)?.1,
            HV_X64_MSR_VP_ASSIST_PAGE => *s.vp_assist.get(vp as usize)?,
            m if (CRASH_P0..HV_X64_MSR_CRASH_CTL).contains(&m) => s.crash[(m - CRASH_P0) as usize],
            _ => return None,
        })
    }

    /// An MSR write by vCPU `vp`; `Err` raises #GP.
    pub fn write_msr(
        &self,
        memory: &GuestMemoryMmap,
        vp: u32,
        msr: u32,
        value: u64,
    ) -> Result<Written, ()> {
        let mut s = self.state();
        match msr {
            HV_X64_MSR_VP_ASSIST_PAGE => *s.vp_assist.get_mut(vp as usize).ok_or(())? = value,
            HV_X64_MSR_STIMER0_CONFIG | HV_X64_MSR_STIMER0_COUNT => {
                let timer = s.stimer.get_mut(vp as usize).ok_or(())?;
                if msr == HV_X64_MSR_STIMER0_CONFIG {
                    timer.0 = value;
                } else {
                    timer.1 = value;
                    // The TLFS (as KVM): a count of 0 stops the timer, and
                    // with auto_enable any other count starts it.
                    let config = hv_stimer_config::from_bits_retain(timer.0);
                    if value == 0 {
                        timer.0 &= !hv_stimer_config::enable.bits();
                    } else if config.contains(hv_stimer_config::auto_enable) {
                        timer.0 |= hv_stimer_config::enable.bits();
                    }
                }
                let (config, count) = *timer;
                drop(s);
                self.schedule(vp, config, count);
                return Ok(Written::Done);
            }
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
        // Sequence 0 means "do not use the page" (the fault, and Xen's
        // viridian on a host whose TSC is not invariant).
        let sequence: u32 = if matches!(
            self.fault,
            Some(Fault::TscPageSequenceZero | Fault::Viridian)
        ) {
            0
        } else {
            1
        };
        page[0..4].copy_from_slice(&sequence.to_le_bytes());
        page[8..16].copy_from_slice(&scale.to_le_bytes());
        page[16..24].copy_from_slice(&(-at_start).to_le_bytes());
        page
    }

    /// The vCPUs' synthetic timers, for the thread that fires them.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Arm or stop `vp`'s timer 0 after a write: a one-shot count is an
    /// absolute reference time (100 ns since the partition started), a
    /// periodic one a period.
    fn schedule(&self, vp: u32, config: u64, count: u64) {
        let config = hv_stimer_config::from_bits_retain(config);
        if !config.contains(hv_stimer_config::enable) || count == 0 {
            self.timers.cancel(vp);
            return;
        }
        let ticks = Duration::from_nanos(count.saturating_mul(100));
        let at = if config.contains(hv_stimer_config::periodic) {
            Instant::now() + ticks
        } else {
            self.started + ticks
        };
        self.timers.arm(vp, at);
    }

    /// `vp`'s timer 0 expired: in direct mode raise its vector; a one-shot
    /// timer is then disabled (as in KVM), a periodic one rearmed.
    pub fn fire(&self, vp: u32, vm: &kvm_ioctls::VmFd) {
        if self.fault == Some(Fault::TimerNeverFires) {
            return;
        }
        let mut s = self.state();
        let Some(timer) = s.stimer.get_mut(vp as usize) else {
            return;
        };
        let config = hv_stimer_config::from_bits_retain(timer.0);
        if !config.contains(hv_stimer_config::enable) {
            return;
        }
        if !config.contains(hv_stimer_config::periodic) {
            timer.0 &= !hv_stimer_config::enable.bits();
        }
        let (raw, count) = *timer;
        drop(s);
        if config.contains(hv_stimer_config::periodic) {
            self.schedule(vp, raw, count);
        }
        if config.contains(hv_stimer_config::direct_mode) {
            let vector = (raw >> 4) as u8;
            if let Err(e) = crate::timers::raise(vm, vp, vector) {
                eprintln!("pvi-sim: synthetic timer of VP {vp}: {e}");
            }
        }
    }

    /// A hypercall by the page: the control word (rcx) and the input and
    /// output (rdx, r8: GPAs, or for a fast call the input itself); the
    /// status for rax, or a flush for the caller's thread to carry out.
    /// `vm` delivers IPIs.
    pub fn hypercall(
        &self,
        memory: &GuestMemoryMmap,
        control: u64,
        input: u64,
        output: u64,
        vm: &kvm_ioctls::VmFd,
    ) -> Hypercall {
        let status = |s: i64| Hypercall::Status(s as u64);
        if self.fault == Some(Fault::HypercallsUnsupported) {
            return status(HV_STATUS_INVALID_HYPERCALL_CODE);
        }
        match control & 0xffff {
            HVCALL_NOTIFY_LONG_SPIN_WAIT => status(HV_STATUS_SUCCESS.into()),
            // Slow: hv_tlb_flush { address_space, flags, processor_mask } at
            // the input GPA. Every address space, global entries included,
            // is flushed: a superset of any request.
            HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE if control & HV_HYPERCALL_FAST_BIT == 0 => {
                let Ok(flush) = memory.read_obj::<[u64; 3]>(GuestAddress(input)) else {
                    return status(HV_STATUS_INVALID_HYPERCALL_INPUT);
                };
                let all = (1u64 << self.cpus.min(63)) - 1;
                if flush[1] & HV_FLUSH_ALL_PROCESSORS != 0 {
                    Hypercall::Flush(all)
                } else {
                    Hypercall::Flush(flush[2] & all)
                }
            }
            // Fast: the vector in rdx, the VP mask in r8.
            HVCALL_SEND_IPI if control & HV_HYPERCALL_FAST_BIT != 0 => {
                let vector = input as u32;
                if !(u32::from(HV_IPI_LOW_VECTOR)..=u32::from(HV_IPI_HIGH_VECTOR)).contains(&vector)
                    || (self.cpus < 64 && output >> self.cpus != 0)
                {
                    return status(HV_STATUS_INVALID_PARAMETER);
                }
                for vp in (0..self.cpus.min(64)).filter(|vp| output & 1 << vp != 0) {
                    if let Err(e) = crate::timers::raise(vm, vp, vector as u8) {
                        eprintln!("pvi-sim: HVCALL_SEND_IPI: {e}");
                    }
                }
                status(HV_STATUS_SUCCESS.into())
            }
            _ => status(HV_STATUS_INVALID_HYPERCALL_CODE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_tsc_scale_turns_a_second_of_ticks_into_ten_million() {
        let hv = Hyperv::new(1, 2_500_000, 0, None);
        let page = hv.reference_tsc_page();
        let scale = u64::from_le_bytes(page[8..16].try_into().unwrap());
        let ticks: u128 = 2_500_000_000;
        let units = (ticks * u128::from(scale)) >> 64;
        assert!((9_999_999..=10_000_000).contains(&units), "{units}");
    }

    #[test]
    fn as_viridian_offers_no_direct_mode_timer_and_an_invalid_tsc_page() {
        let mut leaves = cpuid_leaves(2);
        as_viridian(&mut leaves);
        let features = leaves
            .iter()
            .find(|e| e.function == HYPERV_CPUID_FEATURES)
            .unwrap();
        let misc = HypervMiscFeatures::from_bits_retain(features.edx);
        assert!(!misc.contains(HypervMiscFeatures::HV_STIMER_DIRECT_MODE_AVAILABLE));
        assert!(!misc.contains(HypervMiscFeatures::HV_FEATURE_FREQUENCY_MSRS_AVAILABLE));
        assert!(HypervFeatures::from_bits_retain(features.eax)
            .contains(HypervFeatures::HV_ACCESS_FREQUENCY_MSRS));
        let hv = Hyperv::new(1, 1_000_000, 0, Some(Fault::Viridian));
        assert_eq!(&hv.reference_tsc_page()[0..4], &[0; 4], "sequence 0");
    }

    #[test]
    fn msrs_and_hypercalls() {
        let hv = Hyperv::new(4, 1_000_000, 0, None);
        assert_eq!(hv.read_msr(3, HV_X64_MSR_VP_INDEX), Some(3));
        assert_eq!(
            hv.read_msr(0, HV_X64_MSR_TSC_FREQUENCY),
            Some(1_000_000_000)
        );
        assert_eq!(hv.read_msr(0, 0x4000_0090), None, "SynIC is not announced");
        assert_eq!(hv.read_msr(4, HV_X64_MSR_STIMER0_CONFIG), None, "no VP 4");
    }

    #[test]
    fn a_count_with_auto_enable_enables_the_timer_and_a_zero_count_stops_it() {
        let hv = Hyperv::new(2, 1_000_000, 0, None);
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let config =
            (hv_stimer_config::auto_enable | hv_stimer_config::direct_mode).bits() | 0x40 << 4;
        hv.write_msr(&memory, 1, HV_X64_MSR_STIMER0_CONFIG, config)
            .unwrap();
        hv.write_msr(&memory, 1, HV_X64_MSR_STIMER0_COUNT, 10_000)
            .unwrap();
        let enabled = hv.read_msr(1, HV_X64_MSR_STIMER0_CONFIG).unwrap();
        assert_eq!(enabled, config | hv_stimer_config::enable.bits());
        assert_eq!(hv.read_msr(0, HV_X64_MSR_STIMER0_CONFIG), Some(0), "per VP");
        hv.write_msr(&memory, 1, HV_X64_MSR_STIMER0_COUNT, 0)
            .unwrap();
        assert_eq!(hv.read_msr(1, HV_X64_MSR_STIMER0_CONFIG), Some(config));
    }
}
