//! The generated fallback chains, driven by mock backends on the host: a
//! step whose features are absent is skipped, a failing step falls through
//! to the next and is recorded, generated MSR and CPUID steps convert units
//! as the IDL says, and every chain ends in the native lowering. Plus the
//! coverage promise: every hypervisor of the IDL has a backend in the build,
//! and every mapped op a chain.

use pvi_sdk::generated::ops::Op;
use pvi_sdk::generated::{hyperv, kvm, vmware, xen, xen_pv, HYPERVISORS};
use pvi_sdk::types::*;
use pvi_sdk::{NativeRoutines, PvOps};
use std::cell::RefCell;
use std::sync::Mutex;

/// What the native routines were asked, in order.
static NATIVE_CALLS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn native_called(name: &'static str) {
    NATIVE_CALLS.lock().unwrap().push(name);
}

fn take_native_calls() -> Vec<&'static str> {
    std::mem::take(&mut *NATIVE_CALLS.lock().unwrap())
}

/// The clock the native timer last counted its deadline from.
static TIMER_CLOCK: Mutex<Option<Nanos>> = Mutex::new(None);

/// Host stand-ins for the bare-metal routines: they record the call and
/// return recognisable values.
struct MockNative;

impl NativeRoutines for MockNative {
    fn tsc_clock_ns() -> Nanos {
        native_called("tsc_clock_ns");
        Nanos(111)
    }
    fn tsc_hz_from_cpuid_or_pit() -> Hertz {
        native_called("tsc_hz");
        Hertz(222)
    }
    fn cmos_wallclock() -> Nanos {
        native_called("cmos_wallclock");
        Nanos(333)
    }
    fn no_steal() -> Nanos {
        native_called("no_steal");
        Nanos(0)
    }
    fn ports_reachable_in_ring_0() {
        native_called("ports_reachable_in_ring_0");
    }
    unsafe fn lgdt_table(_table: u64, _entries: u16) -> Result<(), PvError> {
        native_called("lgdt_table");
        Ok(())
    }
    unsafe fn init_startup_startup<P: PvOps + ?Sized>(
        _uses: pvi_sdk::generated::ops::InitStartupStartupUses<'_, P>,
        _target: ApicId,
        _entry: u64,
        _stack: u64,
        _root: Gpa,
        _arg: u64,
    ) -> Result<(), PvError> {
        native_called("init_startup_startup");
        Ok(())
    }
    fn lapic_timer_oneshot<P: PvOps + ?Sized>(
        uses: pvi_sdk::generated::ops::LapicTimerOneshotUses<'_, P>,
        _deadline: Nanos,
    ) -> Result<(), PvError> {
        native_called("lapic_timer_oneshot");
        *TIMER_CLOCK.lock().unwrap() = Some(uses.clock_ns());
        Ok(())
    }
    fn lapic_timer_cancel() {
        native_called("lapic_timer_cancel");
    }
    fn lapic_eoi() {
        native_called("lapic_eoi");
    }
    fn lapic_send_ipi(_targets: CpuSet, _vector: Vector) -> Result<(), PvError> {
        native_called("lapic_send_ipi");
        Ok(())
    }
    fn lapic_kick(_target: ApicId) {
        native_called("lapic_kick");
    }
    fn spin_pause(_target: ApicId) {
        native_called("spin_pause");
    }
    fn never_preempted(_cpu: ApicId) -> bool {
        native_called("never_preempted");
        false
    }
    fn ipi_flush_tlb(_targets: CpuSet) {
        native_called("ipi_flush_tlb");
    }
    fn ipi_flush_tlb_range(_targets: CpuSet, _start: u64, _pages: u64) {
        native_called("ipi_flush_tlb_range");
    }
    unsafe fn page_table_notice_none(_table: Gpa, _level: u8) -> Result<(), PvError> {
        native_called("page_table_notice_none");
        Ok(())
    }
    unsafe fn page_table_release_none(_table: Gpa) -> Result<(), PvError> {
        native_called("page_table_release_none");
        Ok(())
    }
    unsafe fn wrmsr_gs_base(_base: u64) -> Result<(), PvError> {
        native_called("wrmsr_gs_base");
        Ok(())
    }
    unsafe fn lidt_gates(_table: u64, _entries: u16) -> Result<(), PvError> {
        native_called("lidt_gates");
        Ok(())
    }
    fn invlpg_or_flush_all(_start: u64, _pages: u64) {
        native_called("invlpg_or_flush_all");
    }
    fn serial_write(_data: &[u8]) {
        native_called("serial_write");
    }
    fn native_shutdown(_reason: ShutdownReason) -> Result<(), PvError> {
        native_called("native_shutdown");
        Ok(())
    }
    fn pvpanic_port() {
        native_called("pvpanic_port");
    }
}

/// The chains share the native-call log: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn unsupported() -> PvError {
    PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native)
}

/// A KVM backend whose mechanisms answer as the test says.
struct MockKvm {
    features: kvm::Features,
    clock: [Result<Nanos, PvError>; 2],
    fallbacks: RefCell<Vec<(&'static str, usize, ErrorKind)>>,
}

impl MockKvm {
    fn new(
        features: kvm::KvmFeatures,
        clock: [Result<Nanos, PvError>; 2],
    ) -> kvm::Paravirt<MockKvm> {
        kvm::Paravirt(MockKvm {
            features: kvm::Features {
                kvm_features: features,
                ..kvm::Features::NONE
            },
            clock,
            fallbacks: RefCell::new(Vec::new()),
        })
    }
}

// SAFETY: a host mock; no test makes a KVM hypercall through it.
unsafe impl kvm::Steps for MockKvm {
    type Native = MockNative;
    fn features(&self) -> &kvm::Features {
        &self.features
    }
    fn fell_back(&self, op: Op, step: usize, error: PvError) {
        self.fallbacks
            .borrow_mut()
            .push((op.name(), step, error.kind));
    }
    fn hypercalls(&self) -> kvm::Hypercalls {
        panic!("no hypercall on the host")
    }
    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        self.clock[0]
    }
    fn clock_ns_step2(&self) -> Result<Nanos, PvError> {
        self.clock[1]
    }
    fn tsc_hz_step1(&self) -> Result<Hertz, PvError> {
        Err(unsupported())
    }
    fn tsc_hz_step2(&self) -> Result<Hertz, PvError> {
        Err(unsupported())
    }
    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
    fn wallclock_step2(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
    fn steal_ns_step1(&self) -> Result<Nanos, PvError> {
        Ok(Nanos(42))
    }
    fn vcpu_is_preempted_step1(&self, _cpu: ApicId) -> Result<bool, PvError> {
        Ok(true)
    }
    fn flush_tlb_step1(&self, _targets: CpuSet) -> Result<(), PvError> {
        Ok(())
    }
    fn flush_tlb_range_step1(
        &self,
        _targets: CpuSet,
        _start: u64,
        _pages: u64,
    ) -> Result<(), PvError> {
        Ok(())
    }
    fn eoi_step1(&self) -> Result<(), PvError> {
        Ok(())
    }
}

#[test]
fn without_features_every_kvm_chain_goes_native() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let ops = MockKvm::new(kvm::KvmFeatures::empty(), [Ok(Nanos(5)), Ok(Nanos(6))]);
    assert_eq!(ops.clock_ns(), Nanos(111));
    assert_eq!(ops.steal_ns(), Nanos(0));
    assert!(!ops.vcpu_is_preempted(ApicId(1)));
    ops.eoi();
    assert_eq!(
        take_native_calls(),
        ["tsc_clock_ns", "no_steal", "never_preempted", "lapic_eoi"]
    );
    assert!(
        ops.0.fallbacks.borrow().is_empty(),
        "skipping a step for missing features is not a fallback"
    );
}

#[test]
fn the_first_step_with_its_features_serves() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let f = kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE2
        | kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE
        | kvm::KvmFeatures::KVM_FEATURE_STEAL_TIME;
    let ops = MockKvm::new(f, [Ok(Nanos(5)), Ok(Nanos(6))]);
    assert_eq!(ops.clock_ns(), Nanos(5));
    assert_eq!(ops.steal_ns(), Nanos(42));
    assert!(ops.vcpu_is_preempted(ApicId(1)));
    assert!(take_native_calls().is_empty());
    let old_only = MockKvm::new(
        kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE,
        [Ok(Nanos(5)), Ok(Nanos(6))],
    );
    assert_eq!(
        old_only.clock_ns(),
        Nanos(6),
        "step 1 needs CLOCKSOURCE2: skipped"
    );
}

#[test]
fn a_failing_step_falls_through_and_is_recorded() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let f = kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE2 | kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE;
    let ops = MockKvm::new(f, [Err(unsupported()), Ok(Nanos(6))]);
    assert_eq!(ops.clock_ns(), Nanos(6));
    assert_eq!(
        *ops.0.fallbacks.borrow(),
        [("clock_ns", 1, ErrorKind::Unsupported)]
    );
    let broken = MockKvm::new(
        f,
        [
            Err(PvError::new(ErrorKind::Busy, ErrorOrigin::Native)),
            Err(unsupported()),
        ],
    );
    assert_eq!(broken.clock_ns(), Nanos(111), "every step failed: native");
    assert_eq!(
        *broken.0.fallbacks.borrow(),
        [
            ("clock_ns", 1, ErrorKind::Busy),
            ("clock_ns", 2, ErrorKind::Unsupported)
        ]
    );
    assert_eq!(take_native_calls(), ["tsc_clock_ns"]);
}

#[test]
fn a_nop_step_skips_the_native_effect() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ops = MockKvm::new(
        kvm::KvmFeatures::KVM_FEATURE_NOP_IO_DELAY,
        [Ok(Nanos(0)), Ok(Nanos(0))],
    );
    // Natively this is `out 0x80, al`, which would fault here on the host:
    // returning at all shows the nop step served it.
    ops.io_delay();
}

/// A Hyper-V backend recording MSR accesses.
struct MockHyperv {
    features: hyperv::Features,
    msrs: RefCell<Vec<(u32, u64)>>,
    read_value: u64,
    reference_tsc: Result<Nanos, PvError>,
    /// The steps this backend has withdrawn.
    withdrawn: Vec<(&'static str, usize)>,
    /// Whether this CPU has a VP assist page (the EOI's first step).
    vp_assist_page: bool,
    /// EOIs the VP assist page step ended.
    assisted_eois: RefCell<u32>,
}

// SAFETY: a host mock; no test makes a Hyper-V hypercall through it.
unsafe impl hyperv::Steps for MockHyperv {
    type Native = MockNative;
    fn features(&self) -> &hyperv::Features {
        &self.features
    }
    fn fell_back(&self, _op: Op, _step: usize, _error: PvError) {}
    fn withdrawn(&self, op: Op, step: usize) -> bool {
        self.withdrawn.contains(&(op.name(), step))
    }
    fn hypercalls(&self) -> hyperv::Hypercalls {
        panic!("no hypercall on the host")
    }
    // A recording mock: it touches no real MSR, so nothing is unsafe here.
    unsafe fn read_msr(&self, msr: u32) -> u64 {
        self.msrs.borrow_mut().push((msr, 0));
        self.read_value
    }
    unsafe fn write_msr(&self, msr: u32, value: u64) {
        self.msrs.borrow_mut().push((msr, value));
    }
    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        self.reference_tsc
    }
    fn eoi_step1(&self) -> Result<(), PvError> {
        if !self.vp_assist_page {
            return Err(unsupported());
        }
        *self.assisted_eois.borrow_mut() += 1;
        Ok(())
    }
}

fn hyperv_with(
    features: hyperv::HypervFeatures,
    misc: hyperv::HypervMiscFeatures,
    read_value: u64,
    reference_tsc: Result<Nanos, PvError>,
) -> hyperv::Paravirt<MockHyperv> {
    hyperv::Paravirt(MockHyperv {
        features: hyperv::Features {
            hyperv_features: features,
            hyperv_misc_features: misc,
            ..hyperv::Features::NONE
        },
        msrs: RefCell::new(Vec::new()),
        read_value,
        reference_tsc,
        withdrawn: Vec::new(),
        vp_assist_page: false,
        assisted_eois: RefCell::new(0),
    })
}

/// Hyper-V's EOI: the VP assist page step first (it writes the MSR
/// itself when `apic_assist` is clear); a CPU without a page goes on to
/// the EOI MSR; nothing native while the APIC MSRs are recommended.
#[test]
fn hyperv_eoi_tries_the_vp_assist_page_then_the_msr() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let with_apic_msrs = |page: bool| {
        let mut ops = hyperv_with(
            hyperv::HypervFeatures::HV_MSR_APIC_ACCESS_AVAILABLE,
            hyperv::HypervMiscFeatures::empty(),
            0,
            Err(unsupported()),
        );
        ops.0.features.hyperv_hints = hyperv::HypervHints::HV_X64_APIC_ACCESS_RECOMMENDED;
        ops.0.vp_assist_page = page;
        ops
    };
    let ops = with_apic_msrs(true);
    ops.eoi();
    assert_eq!(*ops.0.assisted_eois.borrow(), 1);
    assert!(ops.0.msrs.borrow().is_empty(), "the page step served it");
    let ops = with_apic_msrs(false);
    ops.eoi();
    assert_eq!(*ops.0.msrs.borrow(), [(hyperv::HV_X64_MSR_EOI, 0)]);
    assert!(take_native_calls().is_empty());
    // Not recommended: native, as Linux.
    let ops = hyperv_with(
        hyperv::HypervFeatures::HV_MSR_APIC_ACCESS_AVAILABLE,
        hyperv::HypervMiscFeatures::empty(),
        0,
        Err(unsupported()),
    );
    ops.eoi();
    assert_eq!(take_native_calls(), ["lapic_eoi"]);
}

#[test]
fn hyperv_time_ref_count_is_converted_from_100ns_ticks() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = hyperv::HypervFeatures::HV_MSR_REFERENCE_TSC_AVAILABLE
        | hyperv::HypervFeatures::HV_MSR_TIME_REF_COUNT_AVAILABLE;
    // Sequence 0: the reference TSC page is invalid; TIME_REF_COUNT serves.
    let ops = hyperv_with(
        f,
        hyperv::HypervMiscFeatures::empty(),
        5,
        Err(unsupported()),
    );
    assert_eq!(ops.clock_ns(), Nanos(500), "5 ticks of 100 ns");
    assert_eq!(
        *ops.0.msrs.borrow(),
        [(hyperv::HV_X64_MSR_TIME_REF_COUNT, 0)]
    );
}

/// Xen's Hyper-V emulation (measured on Xen 4.17) grants and serves the
/// frequency MSR on the partition privilege alone, without the misc bit
/// Linux also asks for: a PVH guest there has no PIT to measure with.
#[test]
fn hyperv_tsc_hz_needs_only_the_frequency_privilege() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let ops = hyperv_with(
        hyperv::HypervFeatures::HV_ACCESS_FREQUENCY_MSRS,
        hyperv::HypervMiscFeatures::empty(),
        2_445_432_000,
        Err(unsupported()),
    );
    assert_eq!(ops.tsc_hz(), Hertz(2_445_432_000));
    assert_eq!(
        *ops.0.msrs.borrow(),
        [(hyperv::HV_X64_MSR_TSC_FREQUENCY, 0)]
    );
    assert!(take_native_calls().is_empty());
}

#[test]
fn hyperv_timer_deadlines_are_written_in_100ns_ticks() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = hyperv::HypervFeatures::HV_MSR_SYNTIMER_AVAILABLE;
    let misc = hyperv::HypervMiscFeatures::HV_STIMER_DIRECT_MODE_AVAILABLE;
    let ops = hyperv_with(f, misc, 0, Err(unsupported()));
    ops.timer_oneshot(Nanos(1_234_567)).unwrap();
    ops.timer_cancel();
    assert_eq!(
        *ops.0.msrs.borrow(),
        [
            (hyperv::HV_X64_MSR_STIMER0_COUNT, 12_345),
            (hyperv::HV_X64_MSR_STIMER0_COUNT, 0)
        ]
    );
}

#[test]
fn a_withdrawn_step_is_skipped_and_the_native_timer_serves() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = hyperv::HypervFeatures::HV_MSR_SYNTIMER_AVAILABLE;
    let misc = hyperv::HypervMiscFeatures::HV_STIMER_DIRECT_MODE_AVAILABLE;
    let mut ops = hyperv_with(f, misc, 0, Err(unsupported()));
    ops.0.withdrawn = vec![("timer_oneshot", 1)];
    take_native_calls();
    ops.timer_oneshot(Nanos(1_234_567)).unwrap();
    ops.timer_cancel();
    assert_eq!(
        *ops.0.msrs.borrow(),
        [(hyperv::HV_X64_MSR_STIMER0_COUNT, 0)],
        "timer_cancel's step was not withdrawn"
    );
    // The native timer reads Hyper-V's clock, which, with no clock
    // features here, is bare metal's.
    assert_eq!(take_native_calls(), ["lapic_timer_oneshot", "tsc_clock_ns"]);
}

/// The native timer ending Hyper-V's chain counts the deadline from
/// Hyper-V's clock (here `TIME_REF_COUNT`: 5 ticks of 100 ns), the clock
/// the deadline is in, not from bare metal's (the mock's 111 ns).
#[test]
fn the_native_timer_reads_the_clock_of_the_backend_it_serves() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = hyperv::HypervFeatures::HV_MSR_SYNTIMER_AVAILABLE
        | hyperv::HypervFeatures::HV_MSR_TIME_REF_COUNT_AVAILABLE;
    // No direct-mode timer: `timer_oneshot` falls through to native.
    let ops = hyperv_with(
        f,
        hyperv::HypervMiscFeatures::empty(),
        5,
        Err(unsupported()),
    );
    take_native_calls();
    *TIMER_CLOCK.lock().unwrap() = None;
    ops.timer_oneshot(Nanos(1_234_567)).unwrap();
    assert_eq!(take_native_calls(), ["lapic_timer_oneshot"]);
    assert_eq!(*TIMER_CLOCK.lock().unwrap(), Some(Nanos(500)));
    // With no hypervisor, the same routine reads bare metal's clock.
    struct Bare;
    impl PvOps for Bare {
        type Native = MockNative;
    }
    Bare.timer_oneshot(Nanos(1)).unwrap();
    assert_eq!(*TIMER_CLOCK.lock().unwrap(), Some(Nanos(111)));
    take_native_calls();
}

/// A VMware backend whose timing leaf and backdoor answer as the test says.
struct MockVmware {
    features: vmware::Features,
    timing_eax: u32,
    gethz: Result<Hertz, PvError>,
    fallbacks: RefCell<Vec<(&'static str, usize)>>,
}

// SAFETY: a host mock; it never enters the backdoor.
unsafe impl vmware::Steps for MockVmware {
    type Native = MockNative;
    fn features(&self) -> &vmware::Features {
        &self.features
    }
    fn fell_back(&self, op: Op, step: usize, _error: PvError) {
        self.fallbacks.borrow_mut().push((op.name(), step));
    }
    fn cpuid(&self, leaf: u32) -> [u32; 4] {
        assert_eq!(leaf, vmware::CPUID_VMWARE_FEATURES_LEAF);
        [self.timing_eax, 0, 0, 0]
    }
    fn tsc_hz_step2(&self) -> Result<Hertz, PvError> {
        self.gethz
    }
    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
}

#[test]
fn vmware_tsc_khz_from_the_timing_leaf_becomes_hertz() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ops = vmware::Paravirt(MockVmware {
        features: vmware::Features::NONE,
        timing_eax: 2_000_000,
        gethz: Ok(Hertz(1)),
        fallbacks: RefCell::new(Vec::new()),
    });
    assert_eq!(ops.tsc_hz(), Hertz(2_000_000_000));
    let silent = vmware::Paravirt(MockVmware {
        features: vmware::Features::NONE,
        timing_eax: 0,
        gethz: Ok(Hertz(3_000_000_000)),
        fallbacks: RefCell::new(Vec::new()),
    });
    assert_eq!(
        silent.tsc_hz(),
        Hertz(3_000_000_000),
        "a zero leaf means not provided: GETHZ serves"
    );
    assert_eq!(*silent.0.fallbacks.borrow(), [("tsc_hz", 1)]);
}

/// A Xen backend of a given version whose timing leaf says 2 GHz, whose
/// pvclock record is not mapped, and whose `sched_op` records what it was
/// asked (refusing with EPERM when `refuse`): each hypercall a chain makes
/// is a `Steps` method, so a test sees the call without a hypervisor.
struct MockXen {
    version: Option<(u32, u32, u32)>,
    fallbacks: RefCell<Vec<(&'static str, usize)>>,
    refuse: bool,
    sched_ops: RefCell<Vec<(u32, u32)>>,
}

impl MockXen {
    fn new(version: Option<(u32, u32, u32)>) -> MockXen {
        MockXen {
            version,
            fallbacks: RefCell::new(Vec::new()),
            refuse: false,
            sched_ops: RefCell::new(Vec::new()),
        }
    }
}

// SAFETY: a host mock: the one hypercall its tests' chains make
// (`sched_op`) is overridden; `tsc_hz` makes none (its steps are a Steps
// method and a CPUID leaf).
unsafe impl xen::Steps for MockXen {
    type Native = MockNative;
    fn features(&self) -> &xen::Features {
        &xen::Features::NONE
    }
    fn fell_back(&self, op: Op, step: usize, _error: PvError) {
        self.fallbacks.borrow_mut().push((op.name(), step));
    }
    fn hv_version(&self) -> Option<(u32, u32, u32)> {
        self.version
    }
    fn hypercalls(&self) -> xen::Hypercalls {
        unreachable!("the chains' one hypercall here is overridden")
    }
    unsafe fn hypervisor_sched_op(&self, cmd: u32, arg: u64) -> Result<i64, PvError> {
        // SAFETY: the chain passes the address of a `sched_shutdown` that
        // lives until the call returns.
        let reason = unsafe { (*(arg as *const sched_shutdown)).reason };
        self.sched_ops.borrow_mut().push((cmd, reason));
        if self.refuse {
            Err(xen::error(xen::XEN_EPERM))
        } else {
            Ok(0)
        }
    }
    fn this_cpu(&self) -> u64 {
        0
    }
    fn cpuid(&self, leaf: u32) -> [u32; 4] {
        assert_eq!(leaf, xen::XEN_CPUID_TIME);
        [0, 0, 2_000_000, 0]
    }
    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
    fn tsc_hz_step1(&self) -> Result<Hertz, PvError> {
        Err(unsupported())
    }
    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
    fn steal_ns_step1(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
    fn vcpu_is_preempted_step1(&self, _cpu: ApicId) -> Result<bool, PvError> {
        Err(unsupported())
    }
    fn console_write_step1(&self, _data: &[u8]) -> Result<(), PvError> {
        Err(unsupported())
    }
}

#[test]
fn a_step_newer_than_the_hypervisor_is_skipped_for_the_next() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let xen_of = |version| xen::Paravirt(MockXen::new(version));
    // XEN_CPUID_TIME is @hv_since(4.0): Xen 3.4 has no such leaf, so the
    // chain goes from the failed pvclock step straight to native.
    take_native_calls();
    let old = xen_of(Some((3, 4, 0)));
    assert_eq!(old.tsc_hz(), Hertz(222));
    assert_eq!(take_native_calls(), ["tsc_hz"]);
    assert_eq!(*old.0.fallbacks.borrow(), [("tsc_hz", 1)]);
    // Xen 4.0 has it, and so does a Xen whose version is unknown.
    for version in [Some((4, 0, 0)), Some((4, 17, 0)), None] {
        let new = xen_of(version);
        assert_eq!(new.tsc_hz(), Hertz(2_000_000_000), "Xen {version:?}");
        assert!(take_native_calls().is_empty(), "Xen {version:?}");
    }
}

#[test]
fn xen_reads_its_version_from_the_version_leaf() {
    assert_eq!(
        pvi_backends::xen::version_from_leaf(0x0004_0011),
        Some((4, 17, 0))
    );
    assert_eq!(
        pvi_backends::xen::version_from_leaf(0x0003_0000),
        Some((3, 0, 0))
    );
    assert_eq!(pvi_backends::xen::version_from_leaf(0), None);
}

#[test]
fn the_plan_names_the_step_features_select() {
    let f = kvm::Features {
        kvm_features: kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE,
        ..kvm::Features::NONE
    };
    let plan = kvm::plan(&f);
    let clock = plan.iter().find(|(op, _)| *op == Op::ClockNs).unwrap().1;
    assert_eq!(clock.0, 2);
    assert!(clock.1.contains("MSR_KVM_SYSTEM_TIME "), "{}", clock.1);
    let eoi = plan.iter().find(|(op, _)| *op == Op::Eoi).unwrap().1;
    assert_eq!(
        eoi,
        (2, "native"),
        "PV EOI not announced: the chain's last step, native"
    );
}

#[test]
fn every_hypervisor_has_a_backend_and_every_mapped_op_a_chain() {
    // A hypervisor added to the IDL without a backend is a gap: the
    // registry (`pvi_backends::registry`) builds `src/<name>.rs` under the
    // feature of its name, which the default build must turn on.
    for h in HYPERVISORS {
        assert!(
            pvi_backends::select::COMPILED_IN.contains(&h.name),
            "no backend for {0} in the default build: write backends/src/{0}.rs \
             (its `Steps` and `HypervisorBackend`), and add `{0} = []` to the \
             [features] of backends/Cargo.toml and \"{0}\" to its `default`",
            h.name
        );
    }
    // Every mapped op of the IDL has its generated chain; the chains are
    // type-checked against each backend's Steps, so a mechanism a backend
    // lacks does not compile.
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.unwrap();
    macro_rules! chain_tables {
        ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
            &[$(($feature, pvi_sdk::generated::$name::CHAINS)),*]
        };
    }
    let chains: &[(&str, &[(&str, &str)])] = pvi_sdk::for_each_hypervisor!(chain_tables);
    for hv in model.hypervisors() {
        let (_, table) = chains
            .iter()
            .find(|(n, _)| *n == hv.name.name)
            .unwrap_or_else(|| panic!("no chains for {}", hv.name.name));
        for chain in model.chains(&hv.name.name) {
            let generated = table
                .iter()
                .find(|(op, _)| *op == chain.op)
                .unwrap_or_else(|| panic!("{}: no chain for {}", hv.name.name, chain.op));
            assert_eq!(
                generated.1,
                chain.mechanisms(),
                "{}: {}'s generated chain is not the IDL's",
                hv.name.name,
                chain.op
            );
            assert!(
                generated.1.ends_with("native"),
                "{}: {}'s chain does not end natively: {}",
                hv.name.name,
                chain.op,
                generated.1
            );
        }
    }
}

/// What the boot report shows (`plan`) is a step of the chain that runs:
/// with no feature announced and no version known, each op's plan names
/// the first step of its IDL chain that needs neither, by number and text.
#[test]
fn every_plan_names_the_step_its_chain_starts_with() {
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.unwrap();
    type Plan = fn() -> Vec<(Op, (usize, &'static str))>;
    macro_rules! plans {
        ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
            &[$(($feature, || {
                use pvi_sdk::generated::$name::{plan, Features};
                plan(&Features::NONE).to_vec()
            })),*]
        };
    }
    let plans: &[(&str, Plan)] = pvi_sdk::for_each_hypervisor!(plans);
    let mut checked = 0;
    for (hv, plan) in plans {
        for (op, (number, text)) in plan() {
            let chain = model
                .chain(hv, op.name())
                .unwrap_or_else(|| panic!("{hv}: a plan for unmapped {}", op.name()));
            let first = chain
                .steps
                .iter()
                .find(|s| s.requires.is_empty())
                .expect("every chain ends in native, which needs nothing");
            assert_eq!(
                (number, text),
                (first.number, first.text.as_str()),
                "{hv}: {}",
                op.name()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} plans");
}

#[test]
fn hypervisor_error_codes_map_to_pvi_kinds() {
    assert_eq!(
        kvm::error(kvm::KVM_ENOSYS),
        PvError::new(ErrorKind::Unsupported, ErrorOrigin::Kvm(kvm::KVM_ENOSYS))
    );
    assert_eq!(
        pvi_sdk::generated::xen::error_kind(pvi_sdk::generated::xen::XEN_ENOSYS),
        Some(ErrorKind::Unsupported)
    );
    assert_eq!(
        pvi_sdk::generated::xen::error_kind(pvi_sdk::generated::xen::XEN_EPERM),
        Some(ErrorKind::Denied)
    );
    assert_eq!(
        hyperv::error_kind(hyperv::HV_STATUS_INVALID_HYPERCALL_CODE),
        Some(ErrorKind::Unsupported)
    );
    assert_eq!(
        hyperv::error_kind(hyperv::HV_STATUS_ACCESS_DENIED),
        Some(ErrorKind::Denied)
    );
    assert_eq!(
        kvm::error(12345).kind,
        ErrorKind::Failed,
        "codes the IDL does not list"
    );
    assert_eq!(
        kvm::error(12345).origin,
        ErrorOrigin::Kvm(12345),
        "the hypervisor's own code is kept"
    );
}

/// The hypercall instruction is the IDL's `choose`: by CPU vendor for KVM
/// (Linux's X86_FEATURE_VMMCALL on AMD and Hygon), by the features leaf for
/// VMware, else the first form listed.
#[test]
fn the_hypercall_instruction_is_chosen_as_the_idl_says() {
    let kvm_features = kvm::Features::NONE;
    for (vendor, form) in [
        (b"GenuineIntel", kvm::Instruction::Vmcall),
        (b"AuthenticAMD", kvm::Instruction::Vmmcall),
        (b"HygonGenuine", kvm::Instruction::Vmmcall),
        (b"CentaurHauls", kvm::Instruction::Vmcall),
    ] {
        assert_eq!(kvm::Instruction::choose(&kvm_features, vendor), form);
    }
    let with = |ecx| vmware::Features {
        vmware_features: ecx,
    };
    let intel = b"GenuineIntel";
    assert_eq!(
        vmware::Instruction::choose(&with(vmware::VmwareFeatures::empty()), intel),
        vmware::Instruction::InPort
    );
    assert_eq!(
        vmware::Instruction::choose(
            &with(vmware::VmwareFeatures::CPUID_VMWARE_FEATURES_ECX_VMMCALL),
            intel
        ),
        vmware::Instruction::Vmmcall
    );
    assert_eq!(
        vmware::Instruction::choose(
            &with(vmware::VmwareFeatures::CPUID_VMWARE_FEATURES_ECX_VMCALL),
            b"AuthenticAMD"
        ),
        vmware::Instruction::Vmcall
    );
}

/// The resolved ops (`Model::resolved_ops`, the IR the generators read)
/// are the generated `OPS` table, row for row: id, name, group, hotness.
#[test]
fn every_resolved_op_is_its_row_of_ops() {
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.unwrap();
    assert_eq!(model.resolved_ops.len(), pvi_sdk::generated::ops::OPS.len());
    for op in &model.resolved_ops {
        let row = &pvi_sdk::generated::ops::OPS[op.id];
        assert_eq!(
            (row.name, row.group, row.hot, row.required),
            (op.name.as_str(), op.group.as_str(), op.hot, op.required),
            "op {}",
            op.id
        );
        assert_eq!(format!("{:?}", row.context), format!("{:?}", op.context));
    }
}

/// Xen's `shutdown` chain passes Xen's own reason (pvi numbers a crash 2,
/// Xen 3) in a `sched_shutdown` by address, one guarded step per reason;
/// a refused call leaves the machine to the native power-off.
#[test]
fn xen_shutdown_passes_xens_own_reason_code() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let ops = xen::Paravirt(MockXen::new(None));
    for reason in [
        ShutdownReason::Poweroff,
        ShutdownReason::Reboot,
        ShutdownReason::Crash,
    ] {
        ops.shutdown(reason).unwrap();
    }
    let op = xen::SCHEDOP_shutdown;
    assert_eq!(
        *ops.0.sched_ops.borrow(),
        [
            (op, xen::SHUTDOWN_poweroff),
            (op, xen::SHUTDOWN_reboot),
            (op, xen::SHUTDOWN_crash)
        ]
    );
    assert_eq!(xen::SHUTDOWN_crash, 3);
    assert!(take_native_calls().is_empty());
    let refused = xen::Paravirt(MockXen {
        refuse: true,
        ..MockXen::new(None)
    });
    refused.shutdown(ShutdownReason::Poweroff).unwrap();
    assert_eq!(refused.0.sched_ops.borrow().len(), 1);
    assert_eq!(take_native_calls(), ["native_shutdown"]);
}

/// A vCPU start the mock saw: target, entry, stack, root, argument.
type Started = (u32, u64, u64, u64, u64);

/// A Xen PV backend whose console ring is gone (a dom0's) and whose
/// `console_io` records what it was given, refusing when `refuse`; its
/// routines report fixed answers.
struct MockXenPv {
    refuse: bool,
    console_io: RefCell<Vec<(u32, Vec<u8>)>>,
    /// physdev_op calls: the sub-op and the I/O privilege level asked.
    physdev: RefCell<Vec<(u32, u32)>>,
    /// vCPUs started: target, entry, stack, root, argument.
    started: RefCell<Vec<Started>>,
    /// GDTs given to set_gdt: table, entries.
    gdts: RefCell<Vec<(u64, u16)>>,
    entries: RefCell<Vec<(u64, u64)>>,
    trap_tables: RefCell<Vec<(u64, u16)>>,
    /// The vCPU's event mask, as the irq routines leave it.
    masked: std::cell::Cell<bool>,
}

impl MockXenPv {
    fn new(refuse: bool) -> MockXenPv {
        MockXenPv {
            refuse,
            console_io: RefCell::new(Vec::new()),
            physdev: RefCell::new(Vec::new()),
            started: RefCell::new(Vec::new()),
            gdts: RefCell::new(Vec::new()),
            entries: RefCell::new(Vec::new()),
            trap_tables: RefCell::new(Vec::new()),
            masked: std::cell::Cell::new(true),
        }
    }
}

// SAFETY: a host mock: the hypercalls its tests' chains make
// (`console_io`) are overridden, and its routines touch no memory.
unsafe impl xen_pv::Steps for MockXenPv {
    type Native = MockNative;
    fn features(&self) -> &xen_pv::Features {
        &xen_pv::Features::NONE
    }
    fn hypercalls(&self) -> xen_pv::Hypercalls {
        unreachable!("the chains' hypercalls here are overridden")
    }
    unsafe fn hypervisor_console_io(
        &self,
        cmd: u32,
        count: u32,
        buffer: u64,
    ) -> Result<i64, PvError> {
        // SAFETY: the chain passes `data`'s pointer and length.
        let bytes = unsafe { std::slice::from_raw_parts(buffer as *const u8, count as usize) };
        self.console_io.borrow_mut().push((cmd, bytes.to_vec()));
        if self.refuse {
            Err(xen_pv::error(xen_pv::XEN_EPERM))
        } else {
            Ok(0)
        }
    }
    unsafe fn hypervisor_physdev_op(&self, cmd: u32, arg: u64) -> Result<i64, PvError> {
        // SAFETY: the chain passes the address of its physdev_set_iopl.
        let iopl = unsafe { (*(arg as *const xen_pv::physdev_set_iopl)).iopl };
        self.physdev.borrow_mut().push((cmd, iopl));
        if self.refuse {
            Err(xen_pv::error(xen_pv::XEN_EINVAL))
        } else {
            Ok(0)
        }
    }
    fn xencons_interface(&self) -> Option<core::ptr::NonNull<xencons_interface>> {
        None
    }
    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        Ok(Nanos(42))
    }
    fn tsc_hz_step1(&self) -> Result<Hertz, PvError> {
        Err(unsupported())
    }
    unsafe fn set_gdt_from_table(&self, table: u64, entries: u16) -> Result<(), PvError> {
        self.gdts.borrow_mut().push((table, entries));
        Ok(())
    }
    unsafe fn start_by_vcpu_op(
        &self,
        target: ApicId,
        entry: u64,
        stack: u64,
        root: Gpa,
        arg: u64,
    ) -> Result<(), PvError> {
        self.started
            .borrow_mut()
            .push((target.0, entry, stack, root.0, arg));
        Ok(())
    }
    fn steal_ns_step1(&self) -> Result<Nanos, PvError> {
        Ok(Nanos(7))
    }
    fn vcpu_is_preempted_step1(&self, cpu: ApicId) -> Result<bool, PvError> {
        Ok(cpu.0 == 1)
    }
    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        Err(unsupported())
    }
    fn console_write_step1(&self, _data: &[u8]) -> Result<(), PvError> {
        Err(unsupported())
    }
    unsafe fn write_entry_by_mmu_update(&self, entry: u64, value: u64) -> Result<(), PvError> {
        self.entries.borrow_mut().push((entry, value));
        Ok(())
    }
    fn flush_local_by_mmuext_op(&self, _start: u64, _pages: u64) -> Result<(), PvError> {
        Ok(())
    }
    fn cr2_from_vcpu_info(&self) -> Result<u64, PvError> {
        Ok(0xdead_b000)
    }
    unsafe fn pin_by_mmuext_op(&self, _table: Gpa, level: u8) -> Result<(), PvError> {
        // Xen's answer to a table that does not validate.
        if level == 4 {
            Err(xen_pv::error(xen_pv::XEN_EINVAL))
        } else {
            Ok(())
        }
    }
    unsafe fn unpin_by_mmuext_op(&self, _table: Gpa) -> Result<(), PvError> {
        Ok(())
    }
    unsafe fn new_baseptr_by_mmuext_op(&self, _root: Gpa) -> Result<(), PvError> {
        Ok(())
    }
    fn crash_told_by_shutdown(&self) -> Result<(), PvError> {
        Ok(())
    }
    fn this_cpu(&self) -> u64 {
        0
    }
    fn mask_events(&self) -> Result<(), PvError> {
        self.masked.set(true);
        Ok(())
    }
    fn unmask_events(&self) -> Result<(), PvError> {
        self.masked.set(false);
        Ok(())
    }
    fn save_and_mask_events(&self) -> Result<IrqFlags, PvError> {
        let was = self.masked.replace(true);
        Ok(if was { IrqFlags::empty() } else { IrqFlags::IF })
    }
    fn restore_event_mask(&self, flags: IrqFlags) -> Result<(), PvError> {
        self.masked.set(!flags.contains(IrqFlags::IF));
        Ok(())
    }
    fn events_need_no_eoi(&self) -> Result<(), PvError> {
        Ok(())
    }
    fn flush_multi_by_mmuext_op(&self, _: CpuSet) -> Result<(), PvError> {
        Err(PvError::new(
            ErrorKind::Unsupported,
            ErrorOrigin::XenPv(-38),
        ))
    }
    fn flush_range_multi_by_mmuext_op(&self, _: CpuSet, _: u64, _: u64) -> Result<(), PvError> {
        Err(PvError::new(
            ErrorKind::Unsupported,
            ErrorOrigin::XenPv(-38),
        ))
    }
    fn kick_by_event_channel(&self, _: ApicId) -> Result<(), PvError> {
        Err(PvError::new(
            ErrorKind::Unsupported,
            ErrorOrigin::XenPv(-38),
        ))
    }
    fn block_or_down(&self) -> Result<(), PvError> {
        Err(PvError::new(
            ErrorKind::Unsupported,
            ErrorOrigin::XenPv(-38),
        ))
    }
    fn send_ipi_by_event_channel(&self, _: CpuSet, _: Vector) -> Result<(), PvError> {
        Err(PvError::new(
            ErrorKind::Unsupported,
            ErrorOrigin::XenPv(-38),
        ))
    }
    unsafe fn set_trap_table_from_gates(&self, table: u64, entries: u16) -> Result<(), PvError> {
        self.trap_tables.borrow_mut().push((table, entries));
        Ok(())
    }
}

/// On Xen PV the console falls from the ring to `console_io` (a dom0
/// has no ring), and from a refused `console_io` to the native port;
/// the paging ops reach their routines with the op's own arguments, and
/// none falls to its native instruction, which faults in ring 3.
#[test]
fn xen_pv_chains_reach_xens_calls_and_fall_back_in_order() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    take_native_calls();
    let ops = xen_pv::Paravirt(MockXenPv::new(false));
    ops.console_write(b"dom0 line");
    assert_eq!(
        *ops.0.console_io.borrow(),
        [(xen_pv::CONSOLEIO_write, b"dom0 line".to_vec())]
    );
    assert!(take_native_calls().is_empty());
    // SAFETY: the mock's routine records the call and touches no memory.
    unsafe { ops.page_table_write(0xc4_da30, 0x146 << 12 | 0x67) };
    assert_eq!(*ops.0.entries.borrow(), [(0xc4_da30, 0x146 << 12 | 0x67)]);
    assert_eq!(ops.fault_address(), 0xdead_b000);
    // A table Xen refuses to pin is the caller's error, not a silent
    // native "nothing": the kernel must not use it as a table.

    // SAFETY: the mock's routines touch no memory.
    unsafe {
        assert_eq!(ops.page_table_alloc(Gpa(0x1000), 1), Ok(()));
        assert_eq!(
            ops.page_table_alloc(Gpa(0x2000), 4).map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        assert_eq!(ops.page_table_release(Gpa(0x1000)), Ok(()));
        ops.address_space_switch(Gpa(0x2000));
        // The IDT goes to Xen's virtual IDT, never to `lidt`.
        assert_eq!(ops.trap_table_load(0x20_0000, 256), Ok(()));
    }
    assert_eq!(*ops.0.trap_tables.borrow(), [(0x20_0000, 256)]);
    // The GDT goes to set_gdt, never to `lgdt`.

    // SAFETY: the mock's routine records the call and loads nothing.
    unsafe { ops.gdt_load(0x21_0000, 2) }.unwrap();
    assert_eq!(*ops.0.gdts.borrow(), [(0x21_0000, 2)]);
    // No pvpanic port write (it faults in ring 3): the crash shutdown
    // that follows tells Xen.
    ops.panic_notify();
    // Interrupt masking is the vCPU's event mask: `cli` and `sti` would
    // fault in ring 3 (and here, on the host, too), and no APIC is ended.
    ops.irq_enable();
    assert!(!ops.0.masked.get());
    let on = ops.irq_save();
    assert!(ops.0.masked.get() && on.contains(IrqFlags::IF));
    let off = ops.irq_save();
    assert!(!off.contains(IrqFlags::IF));
    ops.irq_restore(on);
    assert!(!ops.0.masked.get());
    ops.irq_disable();
    assert!(ops.0.masked.get());
    ops.eoi();
    assert_eq!(ops.clock_ns(), Nanos(42));
    // Stolen time and preemption from the runstate area, as on HVM.
    assert_eq!(ops.steal_ns(), Nanos(7));
    assert!(ops.vcpu_is_preempted(ApicId(1)) && !ops.vcpu_is_preempted(ApicId(0)));
    ops.flush_tlb_local(0x14_6000, 1);
    assert!(take_native_calls().is_empty());
    // A vCPU starts through VCPUOP_initialise and VCPUOP_up, never INIT
    // and STARTUP (the ICR faults in ring 3).

    // SAFETY: the mock's routine records the call and starts nothing.
    unsafe { ops.cpu_start(ApicId(1), 0x10_2000, 0x20_0000, Gpa(0x30_0000), 1) }.unwrap();
    assert_eq!(
        *ops.0.started.borrow(),
        [(1, 0x10_2000, 0x20_0000, 0x30_0000, 1)]
    );
    assert!(take_native_calls().is_empty());
    // Ports through Xen's I/O emulation: I/O privilege level 1.
    ops.io_ports_enable();
    assert_eq!(*ops.0.physdev.borrow(), [(xen_pv::PHYSDEVOP_set_iopl, 1)]);
    assert!(take_native_calls().is_empty());
    let refused = xen_pv::Paravirt(MockXenPv::new(true));
    refused.console_write(b"domU line");
    assert_eq!(refused.0.console_io.borrow().len(), 1);
    assert_eq!(take_native_calls(), ["serial_write"]);
    // Refused, the chain ends natively, and the served record says so
    // (the PV entry then keeps away from ports).
    refused.io_ports_enable();
    assert_eq!(take_native_calls(), ["ports_reachable_in_ring_0"]);
}
