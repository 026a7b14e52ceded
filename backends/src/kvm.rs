//! KVM: kvmclock, steal time, PV EOI, and PV TLB flush through steal
//! time; the hypercalls (PV send IPI, kick, sched yield) and `nop` for
//! `io_delay` are made by the generated chains.

use crate::registry::HypervisorBackend;
use crate::native::BareMetal;
use crate::percpu::{PerCpu, Shared, MAX_CPUS};
use crate::platform;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering::SeqCst};
use pvi_sdk::arch::{cpuid, rdtsc, wrmsr};
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::kvm::{self, Features, Hypercalls, Instruction, KvmFeatures, Steps};
use pvi_sdk::time::pvclock;
use pvi_sdk::types::{
    kvm_pv_eoi_word, kvm_steal_time, pvclock_vcpu_time_info, pvclock_wall_clock, ApicId, CpuSet,
    ErrorKind, ErrorOrigin, Hertz, Nanos, PvError,
};
use pvi_sdk::NativeRoutines;

static CLOCK: PerCpu<pvclock_vcpu_time_info> =
    PerCpu([const { Shared::new(pvclock_vcpu_time_info::ZERO) }; MAX_CPUS]);
static STEAL: PerCpu<kvm_steal_time> =
    PerCpu([const { Shared::new(kvm_steal_time::ZERO) }; MAX_CPUS]);
static EOI: PerCpu<kvm_pv_eoi_word> =
    PerCpu([const { Shared::new(kvm_pv_eoi_word::ZERO) }; MAX_CPUS]);
static WALL: Shared<pvclock_wall_clock> = Shared::new(pvclock_wall_clock::ZERO);

/// Which kvmclock MSR registered a CPU's record: 0 none, 1 the new one, 2
/// the old one.
static CLOCK_VIA: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
static STEAL_ON: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
static EOI_ON: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

const VIA_NEW: u8 = 1;
const VIA_OLD: u8 = 2;
/// Reads of a steal-time record before giving up on a version stuck odd.
const STEAL_RETRIES: u32 = 1000;


/// A shared record that kept changing or stayed mid-update.
/// Set once a kvmclock record stayed mid-update: the clock steps then fail
/// at once.
static KVMCLOCK_RETIRED: crate::retired::Retired = crate::retired::Retired::new();

fn unstable() -> PvError {
    PvError::new(ErrorKind::Busy, ErrorOrigin::Native)
}

/// The KVM backend: the features KVM announced and its hypercalls.
#[derive(Clone, Copy, Debug)]
pub struct Kvm {
    features: Features,
    hypercalls: Hypercalls,
}

impl Kvm {
    /// The features KVM announced.
    pub fn features(&self) -> &Features {
        &self.features
    }

    fn clock(&self, via: u8) -> Result<Nanos, PvError> {
        let cpu = platform::cpu_index();
        if CLOCK_VIA[cpu].load(SeqCst) != via {
            return Err(PvError::UNSUPPORTED);
        }
        KVMCLOCK_RETIRED.guard(unstable(), || {
            // SAFETY: this CPU's record, registered with KVM, aligned.
            unsafe { pvclock::now(CLOCK.of(cpu).get(), rdtsc) }.map_err(|_| unstable())
        })
    }

    /// Attempts the version protocol took over `reads` kvmclock reads on
    /// this CPU, or `None` without a registered record. Each attempt reads
    /// the TSC once: this tells a clock that retries from one that is slow
    /// for other reasons.
    pub fn clock_attempts(&self, reads: u32) -> Option<u64> {
        let cpu = platform::cpu_index();
        if CLOCK_VIA[cpu].load(SeqCst) == 0 || KVMCLOCK_RETIRED.is_retired() {
            return None;
        }
        let mut attempts = 0u64;
        for _ in 0..reads {
            let counted = || {
                attempts += 1;
                rdtsc()
            };
            // SAFETY: as in `clock`.
            unsafe { pvclock::now(CLOCK.of(cpu).get(), counted) }.ok()?;
        }
        Some(attempts)
    }

    fn tsc_hz(&self, via: u8) -> Result<Hertz, PvError> {
        let cpu = platform::cpu_index();
        if CLOCK_VIA[cpu].load(SeqCst) != via {
            return Err(PvError::UNSUPPORTED);
        }
        let snapshot = KVMCLOCK_RETIRED.guard(unstable(), || {
            // SAFETY: as in `clock`.
            unsafe { pvclock::read(CLOCK.of(cpu).get()) }.map_err(|_| unstable())
        })?;
        snapshot.tsc_hz().ok_or(PvError::UNSUPPORTED)
    }

    fn wallclock(&self, msr: u32, via: u8) -> Result<Nanos, PvError> {
        let now = self.clock(via)?;
        // SAFETY: writing the wall-clock MSR makes KVM write the wall time at
        // system time zero into WALL, a static, 4-byte aligned record.
        unsafe { wrmsr(msr, platform::gpa(WALL.get() as usize)) };
        // SAFETY: WALL, just written by KVM.
        let wall = unsafe { pvclock::read_wall_clock(WALL.get()) }.map_err(|_| unstable())?;
        Ok(pvclock::wall_time(&wall, now))
    }

    /// Set KVM_VCPU_FLUSH_TLB in the steal-time record of each target KVM
    /// has preempted (KVM flushes it before it runs again); the targets
    /// left for the flush IPI.
    fn flag_preempted_for_flush(targets: CpuSet) -> Result<CpuSet, PvError> {
        let p = platform::get().ok_or(PvError::UNSUPPORTED)?;
        let mut remaining = targets.0;
        for apic in (0..64u32).filter(|i| targets.0 & (1 << i) != 0) {
            let Some(cpu) = p.cpu_of_apic(ApicId(apic)) else {
                continue;
            };
            if cpu >= MAX_CPUS || STEAL_ON[cpu].load(SeqCst) == 0 {
                continue;
            }
            // SAFETY: the `preempted` byte of a registered static record,
            // which KVM and the guest update atomically (the ABI's protocol).
            let byte = unsafe {
                AtomicU8::from_ptr(core::ptr::addr_of_mut!((*STEAL.of(cpu).get()).preempted))
            };
            let current = byte.load(SeqCst);
            if current & kvm::KVM_VCPU_PREEMPTED != 0
                && byte
                    .compare_exchange(current, current | kvm::KVM_VCPU_FLUSH_TLB, SeqCst, SeqCst)
                    .is_ok()
            {
                remaining &= !(1 << apic);
            }
        }
        Ok(CpuSet(remaining))
    }

    /// The steal-time record of CPU `cpu` under its version protocol.
    fn steal_record(cpu: usize) -> Result<(u64, u8), PvError> {
        if STEAL_ON[cpu.min(MAX_CPUS - 1)].load(SeqCst) == 0 {
            return Err(PvError::UNSUPPORTED);
        }
        let record = STEAL.of(cpu).get();
        for _ in 0..STEAL_RETRIES {
            // SAFETY: a registered static record; fields read volatile,
            // each aligned (the record is 64-byte aligned, repr(C)).
            let (v1, steal, preempted, v2) = unsafe {
                let v1 = core::ptr::addr_of!((*record).version).read_volatile();
                core::sync::atomic::fence(SeqCst);
                let steal = core::ptr::addr_of!((*record).steal).read_volatile();
                let preempted = core::ptr::addr_of!((*record).preempted).read_volatile();
                core::sync::atomic::fence(SeqCst);
                (
                    v1,
                    steal,
                    preempted,
                    core::ptr::addr_of!((*record).version).read_volatile(),
                )
            };
            if v1 == v2 && v1 % 2 == 0 {
                return Ok((steal, preempted));
            }
        }
        Err(unstable())
    }
}

// SAFETY: a `Kvm` is only made by `Kvm::new`, whose contract is that KVM is
// the hypervisor.
unsafe impl Steps for Kvm {
    type Native = BareMetal;

    fn features(&self) -> &Features {
        &self.features
    }

    fn hypercalls(&self) -> Hypercalls {
        self.hypercalls
    }

    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        self.clock(VIA_NEW)
    }

    fn clock_ns_step2(&self) -> Result<Nanos, PvError> {
        self.clock(VIA_OLD)
    }

    fn tsc_hz_step1(&self) -> Result<Hertz, PvError> {
        self.tsc_hz(VIA_NEW)
    }

    fn tsc_hz_step2(&self) -> Result<Hertz, PvError> {
        self.tsc_hz(VIA_OLD)
    }

    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        self.wallclock(kvm::MSR_KVM_WALL_CLOCK_NEW, VIA_NEW)
    }

    fn wallclock_step2(&self) -> Result<Nanos, PvError> {
        self.wallclock(kvm::MSR_KVM_WALL_CLOCK, VIA_OLD)
    }

    fn steal_ns_step1(&self) -> Result<Nanos, PvError> {
        Self::steal_record(platform::cpu_index()).map(|(steal, _)| Nanos(steal))
    }

    fn vcpu_is_preempted_step1(&self, cpu: ApicId) -> Result<bool, PvError> {
        let index = platform::get()
            .and_then(|p| p.cpu_of_apic(cpu))
            .ok_or(PvError::UNSUPPORTED)?;
        Self::steal_record(index).map(|(_, preempted)| preempted & kvm::KVM_VCPU_PREEMPTED != 0)
    }

    /// A preempted target gets KVM_VCPU_FLUSH_TLB in its steal-time record,
    /// and KVM flushes it before it runs again; the others get the IPI.
    fn flush_tlb_step1(&self, targets: CpuSet) -> Result<(), PvError> {
        let remaining = Self::flag_preempted_for_flush(targets)?;
        if remaining.0 != 0 {
            BareMetal::ipi_flush_tlb(remaining);
        }
        Ok(())
    }

    /// As [`flush_tlb_step1`](Self::flush_tlb_step1): KVM flushes a
    /// preempted target whole (a superset of the range); the others get
    /// the range with the IPI.
    fn flush_tlb_range_step1(&self, targets: CpuSet, start: u64, pages: u64) -> Result<(), PvError> {
        let remaining = Self::flag_preempted_for_flush(targets)?;
        if remaining.0 != 0 {
            BareMetal::ipi_flush_tlb_range(remaining, start, pages);
        }
        Ok(())
    }

    /// If KVM set the PV EOI bit, it has already done the EOI: clear the bit
    /// and skip the APIC write; otherwise write the APIC.
    fn eoi_step1(&self) -> Result<(), PvError> {
        let cpu = platform::cpu_index();
        if EOI_ON[cpu].load(SeqCst) == 0 {
            return Err(PvError::UNSUPPORTED);
        }
        let record = EOI.of(cpu).get();
        // SAFETY: this CPU's registered PV EOI word, 4-byte aligned; KVM and the guest update it atomically.
        let word = unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*record).word)) };
        crate::eoi_assist::end_interrupt(word, 1 << kvm::KVM_PV_EOI_BIT, BareMetal::lapic_eoi);
        Ok(())
    }
}

// The hooks the registry (`crate::registry`) calls for every backend.
impl HypervisorBackend for Kvm {
    fn clock_attempts(&self, reads: u32) -> Option<u64> {
        Kvm::clock_attempts(self, reads)
    }

    /// The backend for the KVM that detection found.
    ///
    /// # Safety
    ///
    /// `choice` must be KVM's, as detection reported it: the generated
    /// chains will make KVM hypercalls.
    unsafe fn new(choice: &Choice) -> Kvm {
        let features = Features::read(|leaf| cpuid(choice.leaf(leaf), 0).to_array());
        let vendor = pvi_sdk::detect::cpu_vendor(&mut pvi_sdk::arch::Hardware);
        let instruction = Instruction::choose(&features, &vendor);
        Kvm {
            features,
            hypercalls: Hypercalls::new(instruction),
        }
    }

    /// Register this CPU's kvmclock, steal-time and PV EOI records, as far as
    /// the features allow. Call it once on every CPU.
    /// KVM writes a kvmclock record (an even, non-zero version) as soon as
    /// its MSR is written.
    fn cpu_record_written(&self, cpu: usize) -> Option<bool> {
        if CLOCK_VIA[0].load(SeqCst) == 0 {
            return None;
        }
        if cpu >= MAX_CPUS || CLOCK_VIA[cpu].load(SeqCst) == 0 {
            return Some(false);
        }
        // SAFETY: a static record, aligned; KVM may write it at any time,
        // hence the volatile read.
        let version = unsafe { core::ptr::addr_of!((*CLOCK.of(cpu).get()).version).read_volatile() };
        Some(version != 0)
    }

    fn init_cpu(&self) {
        let cpu = platform::cpu_index();
        let f = self.features.kvm_features;
        let clock = platform::gpa(CLOCK.of(cpu).get() as usize);
        let via = if f.contains(KvmFeatures::KVM_FEATURE_CLOCKSOURCE2) {
            // SAFETY: KVM announced kvmclock at this MSR; the record is a
            // static, 32-byte aligned, inside one page, for KVM to write.
            unsafe { wrmsr(kvm::MSR_KVM_SYSTEM_TIME_NEW, clock | 1) };
            VIA_NEW
        } else if f.contains(KvmFeatures::KVM_FEATURE_CLOCKSOURCE) {
            // SAFETY: as above, at the old MSR.
            unsafe { wrmsr(kvm::MSR_KVM_SYSTEM_TIME, clock | 1) };
            VIA_OLD
        } else {
            0
        };
        CLOCK_VIA[cpu].store(via, SeqCst);
        if f.contains(KvmFeatures::KVM_FEATURE_STEAL_TIME) {
            let steal = platform::gpa(STEAL.of(cpu).get() as usize);
            // SAFETY: KVM announced steal time; the record is 64-byte aligned
            // (its own cache line, as KVM requires) and static.
            unsafe { wrmsr(kvm::MSR_KVM_STEAL_TIME, steal | kvm::KVM_MSR_ENABLED) };
            STEAL_ON[cpu].store(1, SeqCst);
        }
        if f.contains(KvmFeatures::KVM_FEATURE_PV_EOI) {
            let eoi = platform::gpa(EOI.of(cpu).get() as usize);
            // SAFETY: KVM announced PV EOI; the word is 4-byte aligned and
            // static.
            unsafe {
                wrmsr(
                    kvm::MSR_KVM_PV_EOI_EN,
                    eoi | u64::from(kvm::KVM_PV_EOI_ENABLED),
                )
            };
            EOI_ON[cpu].store(1, SeqCst);
        }
    }
}

/// The KVM backend's ops.
pub type Ops = kvm::Paravirt<Kvm>;
