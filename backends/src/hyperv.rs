//! Hyper-V: guest OS id and hypercall page at setup, the reference TSC page
//! for the clock, a VP assist page per CPU for exit-free EOIs; MSR steps
//! (TIME_REF_COUNT, TSC_FREQUENCY, the synthetic timer, EOI, crash
//! notification) and the IPI, flush and spin-wait hypercalls are made by
//! the generated chains.
//!
//! The hypercall page, the reference TSC page and the VP assist pages are
//! statics of this crate: the kernel must map them (identity, and the
//! hypercall page executable) for
//! [`Platform::gpa`](crate::platform::Platform::gpa) to name them.

use crate::registry::HypervisorBackend;
use crate::fallback;
use crate::native::BareMetal;
use crate::percpu::{Page, Shared};
use crate::platform;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use pvi_sdk::arch::{cpuid, rdmsr, rdtsc, wrmsr};
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::hyperv::{
    self, Features, Hypercalls, HypervFeatures, HypervHints, HypervMiscFeatures, Steps,
};
use pvi_sdk::generated::ops::Op;
use pvi_sdk::time::reftsc::{self, RefTscError};
use pvi_sdk::types::hv_stimer_config;
use pvi_sdk::types::{ms_hyperv_tsc_page, ErrorKind, ErrorOrigin, Nanos, PvError};

#[link_section = "pvi_hypercall_pages"]
static HYPERCALL_PAGE: Page = Page::new();

/// Where the hypercall page is, for [`crate::hypercall_page::pages`].
pub(crate) fn hypercall_page() -> usize {
    HYPERCALL_PAGE.0.get() as usize
}

#[repr(C, align(4096))]
struct RefTscPage(Shared<ms_hyperv_tsc_page>);
static REFERENCE_TSC: RefTscPage = RefTscPage(Shared::new(ms_hyperv_tsc_page::ZERO));

/// CPUs that get a VP assist page: as many as the IPI and flush
/// hypercalls' 64-bit VP masks reach. A CPU from this index up ends its
/// interrupts with the EOI MSR (the chain's next step), as Hyper-V's
/// guests did before the page existed; each such EOI counts as a fallback
/// in the boot report, so the limit shows.
pub const VP_ASSIST_CPUS: usize = 64;

/// One 4 KiB page per CPU, the hypervisor's to write (HV_VP_ASSIST_PAGE).
static VP_ASSIST: [Page; VP_ASSIST_CPUS] = [const { Page::new() }; VP_ASSIST_CPUS];
/// Whether this CPU's page is registered.
static VP_ASSIST_ON: [AtomicBool; VP_ASSIST_CPUS] =
    [const { AtomicBool::new(false) }; VP_ASSIST_CPUS];

/// Bit 0 of `hv_vp_assist_page.apic_assist`: the TLFS's
/// HV_VIRTUAL_APIC_ASSIST.NoEoiRequired (Linux tests the literal 0x1).
const NO_EOI_REQUIRED: u32 = 1;

/// The guest identity written to HV_X64_MSR_GUEST_OS_ID: the open-source
/// form (bit 63) with OS type 0x7f, which the TLFS does not assign to any
/// OS, and 0x0400_0001 in the version field (bits 47:16). Hyper-V requires
/// only that it be non-zero before the hypercall page is enabled. The
/// version's top byte is 4 for Xen's Hyper-V emulation (viridian): it reads
/// bits 47:40 as the OS field of Microsoft's format and, below 4, answers
/// the recommendations leaf (0x40000004: remote TLB flush, MSR-based APIC
/// access, cluster IPI) with zeros (Xen's cpuid_viridian_leaves, seen on
/// Xen 4.17). Linux clears that bar with its major version in the same byte.
pub const GUEST_OS_ID: u64 = 1 << 63 | 0x7f << 56 | 0x0400_0001 << 16;
// Xen's cpuid_viridian_leaves gives recommendations from OS 4 up.
const _: () = assert!(GUEST_OS_ID >> 40 & 0xff >= 4);


/// The Hyper-V backend.
#[derive(Clone, Copy, Debug)]
pub struct Hyperv {
    features: Features,
    hypercalls: Hypercalls,
    reference_tsc: bool,
}

impl Hyperv {
    /// Give Hyper-V this CPU's VP assist page, where the APIC MSRs are
    /// recommended (the EOI step's features), so that it can arm
    /// `apic_assist`.
    fn register_vp_assist(&self) {
        let f = &self.features;
        let wanted = f
            .hyperv_features
            .contains(HypervFeatures::HV_MSR_APIC_ACCESS_AVAILABLE)
            && f
                .hyperv_hints
                .contains(HypervHints::HV_X64_APIC_ACCESS_RECOMMENDED);
        let cpu = platform::cpu_index();
        let Some(on) = VP_ASSIST_ON.get(cpu) else {
            return;
        };
        if !wanted {
            return;
        }
        let gpa = platform::gpa(VP_ASSIST[cpu].0.get() as usize);
        // SAFETY: Hyper-V announced the APIC MSRs; this CPU's own static, page-aligned page.
        unsafe {
            wrmsr(
                hyperv::HV_X64_MSR_VP_ASSIST_PAGE,
                gpa | hyperv::HV_X64_MSR_VP_ASSIST_PAGE_ENABLE,
            )
        };
        on.store(true, SeqCst);
    }

    /// The IPI and flush hypercalls take their targets as a mask of VP
    /// indices, which the chains fill by APIC id. Where the two differ on
    /// any CPU (Xen's viridian gives vCPU n the APIC id 2n, VP index n),
    /// those steps would interrupt or flush the wrong CPUs: they go, and
    /// the boot report says so, rather than miss their targets silently.
    fn check_vp_index(&self) {
        if !self
            .features
            .hyperv_features
            .contains(HypervFeatures::HV_MSR_VP_INDEX_AVAILABLE)
        {
            return;
        }
        // SAFETY: Hyper-V announced HV_X64_MSR_VP_INDEX; reading it has no
        // side effect.
        let vp_index = unsafe { rdmsr(hyperv::HV_X64_MSR_VP_INDEX) };
        // The initial APIC id (CPUID.1:EBX[31:24]) is the id the masks
        // would use for this CPU while there are fewer than 256.
        let apic_id = u64::from(cpuid(1, 0).ebx >> 24);
        if vp_index != apic_id {
            let plan = hyperv::plan(&self.features);
            for op in [Op::SendIpi, Op::FlushTlb] {
                let why = PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Hyperv(0));
                crate::withdrawn::withdraw_planned(&plan, op, why);
            }
        }
    }
}

// SAFETY: a `Hyperv` is only made by `Hyperv::new`, whose contract is that
// Hyper-V is the hypervisor.
unsafe impl Steps for Hyperv {
    type Native = BareMetal;

    fn features(&self) -> &Features {
        &self.features
    }

    fn hypercalls(&self) -> Hypercalls {
        self.hypercalls
    }

    unsafe fn read_msr(&self, msr: u32) -> u64 {
        // SAFETY: the caller's contract: a Hyper-V MSR the IDL maps, its
        // features checked, in ring 0.
        unsafe { rdmsr(msr) }
    }

    unsafe fn write_msr(&self, msr: u32, value: u64) {
        // SAFETY: the caller's contract: a Hyper-V MSR and a value the
        // IDL's mapping writes, its features checked, in ring 0.
        unsafe { wrmsr(msr, value) }
    }

    /// The reference TSC page; a sequence of 0 means Hyper-V says it is not
    /// usable now, and the chain goes on to TIME_REF_COUNT.
    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        if !self.reference_tsc {
            return Err(hyperv::unsupported());
        }
        // SAFETY: the registered, page-aligned reference TSC page.
        match unsafe { reftsc::read(REFERENCE_TSC.0.get(), rdtsc) } {
            Ok(ticks) => Ok(reftsc::to_nanos(ticks)),
            Err(RefTscError::Invalid) => Err(hyperv::unsupported()),
            Err(RefTscError::Unstable) => {
                Err(PvError::new(ErrorKind::Busy, ErrorOrigin::Hyperv(0)))
            }
        }
    }

    /// If Hyper-V set `apic_assist` when it delivered this interrupt, it
    /// does the EOI itself: clear the bit and touch nothing that exits.
    /// Otherwise write HV_X64_MSR_EOI here, so that an EOI is neither
    /// skipped nor done twice (Linux hv_apic_eoi_write). A CPU without a
    /// page goes on to the MSR step.
    fn eoi_step1(&self) -> Result<(), PvError> {
        let cpu = platform::cpu_index();
        if !VP_ASSIST_ON.get(cpu).is_some_and(|on| on.load(SeqCst)) {
            return Err(hyperv::unsupported());
        }
        let page = VP_ASSIST[cpu].0.get().cast::<u32>();
        // SAFETY: this CPU's registered, aligned page; apic_assist is only updated atomically.
        let word = unsafe { AtomicU32::from_ptr(page) };
        crate::eoi_assist::end_interrupt(word, NO_EOI_REQUIRED, || {
            // SAFETY: the step's features announce the APIC MSRs; writing 0 ends the interrupt.
            unsafe { wrmsr(hyperv::HV_X64_MSR_EOI, 0) }
        });
        Ok(())
    }
}

// The hooks the registry (`crate::registry`) calls for every backend.
impl HypervisorBackend for Hyperv {
    /// Set up the Hyper-V that detection found: guest OS id, hypercall
    /// page, reference TSC page, as far as the features allow.
    ///
    /// # Safety
    ///
    /// `choice` must be Hyper-V's, in ring 0, once; the kernel maps this
    /// crate's statics as the module doc says.
    unsafe fn new(choice: &Choice) -> Hyperv {
        let mut features = Features::read(|leaf| cpuid(choice.leaf(leaf), 0).to_array());
        let f = features.hyperv_features;
        let page = HYPERCALL_PAGE.0.get() as *const u8;
        if f.contains(HypervFeatures::HV_MSR_HYPERCALL_AVAILABLE) {
            // SAFETY: Hyper-V announced the hypercall MSRs; the guest id must
            // be non-zero before the page is enabled; the page is a static,
            // page-aligned, which Hyper-V overlays with its code.
            unsafe {
                wrmsr(hyperv::HV_X64_MSR_GUEST_OS_ID, GUEST_OS_ID);
                wrmsr(
                    hyperv::HV_X64_MSR_HYPERCALL,
                    platform::gpa(page as usize) | hyperv::HV_X64_MSR_HYPERCALL_ENABLE,
                );
            }
            // Xen's viridian fills the version and recommendations leaves
            // only once the guest has said who it is: read them again.
            features = Features::read(|leaf| cpuid(choice.leaf(leaf), 0).to_array());
        }
        let reference_tsc = f.contains(HypervFeatures::HV_MSR_REFERENCE_TSC_AVAILABLE);
        if reference_tsc {
            // SAFETY: Hyper-V announced the reference TSC page; the page is a
            // static, page-aligned, which Hyper-V overlays.
            unsafe {
                wrmsr(
                    hyperv::HV_X64_MSR_REFERENCE_TSC,
                    platform::gpa(REFERENCE_TSC.0.get() as usize)
                        | hyperv::HV_X64_MSR_TSC_REFERENCE_ENABLE,
                )
            };
        }
        if f.contains(HypervFeatures::HV_MSR_HYPERCALL_AVAILABLE) {
            // SAFETY: setup, on the boot CPU, once: no hypercall is in
            // flight, and the page is this crate's static.
            let bytes = unsafe { &mut *HYPERCALL_PAGE.0.get() };
            if crate::hypercall_page::is_empty(bytes) {
                let refusal = hyperv::HV_STATUS_INVALID_HYPERCALL_CODE as i32;
                crate::hypercall_page::fill_with_refusals(bytes, 4096, refusal);
                fallback::record_setup(0, hyperv::unsupported());
            }
        }
        // Calls go through the page only when the hypercall feature was
        // announced (the chains' `requires`).

        // SAFETY: Hyper-V fills the page once the MSR is written (or, if it
        // did not, its one entry now refuses every call).
        let hypercalls = unsafe { Hypercalls::new(page) };
        // The synthetic timer takes deadlines in reference time. Without a
        // reference clock `clock_ns` is the native clock, whose deadlines
        // Hyper-V would misread: the timer steps go.
        if !reference_tsc && !f.contains(HypervFeatures::HV_MSR_TIME_REF_COUNT_AVAILABLE) {
            let plan = hyperv::plan(&features);
            for op in [Op::TimerOneshot, Op::TimerCancel] {
                crate::withdrawn::withdraw_planned(&plan, op, hyperv::unsupported());
            }
        }
        Hyperv {
            features,
            hypercalls,
            reference_tsc,
        }
    }

    /// Configure this CPU's synthetic timer 0 to raise the platform's timer
    /// vector directly (as Linux's hv_stimer_init does), so that
    /// `timer_oneshot` only has to write its count. Call it on every CPU.
    fn init_cpu(&self) {
        self.check_vp_index();
        self.register_vp_assist();
        let direct = self
            .features
            .hyperv_features
            .contains(HypervFeatures::HV_MSR_SYNTIMER_AVAILABLE)
            && self
                .features
                .hyperv_misc_features
                .contains(HypervMiscFeatures::HV_STIMER_DIRECT_MODE_AVAILABLE);
        let Some(vector) = platform::get().map(|p| p.vectors().timer) else {
            return;
        };
        if direct {
            let config = (hv_stimer_config::enable
                | hv_stimer_config::auto_enable
                | hv_stimer_config::direct_mode)
                .bits()
                | u64::from(vector) << 4;
            // SAFETY: Hyper-V announced synthetic timers in direct mode; the
            // vector goes in bits 4-11 of the configuration (the TLFS).
            unsafe { wrmsr(hyperv::HV_X64_MSR_STIMER0_CONFIG, config) };
        }
    }
}

/// The Hyper-V backend's ops.
pub type Ops = hyperv::Paravirt<Hyperv>;
