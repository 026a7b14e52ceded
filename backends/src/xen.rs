//! Xen (HVM and PVH guests): the hypercall page from the MSR CPUID names,
//! shared_info mapped with XENMEM_add_to_physmap (vCPU time and wall
//! clock), and the vCPU runstate area (steal time, preemption). Timer,
//! yield, console, flush and shutdown hypercalls are made by the generated
//! chains.
//!
//! The hypercall page, shared_info and runstate areas are statics of this
//! crate, which the kernel must map (identity; the hypercall page
//! executable).

use crate::registry::HypervisorBackend;
use crate::xen_console::XenConsole;
use crate::select::Upcall;
use crate::fallback;
use crate::xen_runstate::RUNSTATES;
use crate::native::BareMetal;
use crate::percpu::{Page, Shared};
use crate::platform::{self, MemoryRegion};
use pvi_sdk::arch::{cpuid, rdtsc, wrmsr};
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::ops::Op;
use pvi_sdk::generated::xen::{self, Features, Hypercalls, Steps};
use pvi_sdk::time::pvclock;
use pvi_sdk::types::{
    pvclock_vcpu_time_info, shared_info,
    xen_add_to_physmap, xen_feature_info,
    xen_hvm_param, xen_memory_map, ApicId, ErrorKind, ErrorOrigin, Hertz, Nanos,
    PvError,
};

#[link_section = "pvi_hypercall_pages"]
static HYPERCALL_PAGE: Page = Page::new();

/// Where the hypercall page is, for [`crate::hypercall_page::pages`].
pub(crate) fn hypercall_page() -> usize {
    HYPERCALL_PAGE.0.get() as usize
}

#[repr(C, align(4096))]
struct SharedInfoPage(Shared<shared_info>);
static SHARED_INFO: SharedInfoPage = SharedInfoPage(Shared::new(shared_info::ZERO));
/// Each CPU's VIRQ_TIMER port (0: not bound; Xen never allocates port 0).
static TIMER_PORT: crate::xen_events::TimerPorts = crate::xen_events::TimerPorts::new();


/// Set once a vcpu_time_info stayed mid-update: the clock steps then fail
/// at once.
static TIME_INFO_RETIRED: crate::retired::Retired = crate::retired::Retired::new();

fn unstable() -> PvError {
    PvError::new(ErrorKind::Busy, ErrorOrigin::Xen(0))
}

/// The Xen backend.
#[derive(Clone, Copy, Debug)]
pub struct Xen {
    features: Features,
    hypercalls: Hypercalls,
    choice: Choice,
    shared_info: bool,
    version: Option<(u32, u32, u32)>,
    hardware_domain: bool,
    /// The PV console ring and its event channel.
    console: Option<XenConsole>,
}


/// Xen's version from `XEN_CPUID_VERSION`'s eax (major in the high half,
/// minor in the low; no patch level, so 0): `None` for a zero register,
/// which no Xen reports.
pub fn version_from_leaf(eax: u32) -> Option<(u32, u32, u32)> {
    (eax != 0).then_some((eax >> 16, eax & 0xffff, 0))
}

impl Xen {
    /// The Xen version CPUID reported, if any: chain steps that need a
    /// newer one are skipped.
    pub fn version(&self) -> Option<(u32, u32, u32)> {
        self.version
    }

    /// Whether this domain is Xen's hardware domain (`XENFEAT_dom0`).
    ///
    /// Xen answers a hardware domain's `SCHEDOP_shutdown(SHUTDOWN_poweroff)`
    /// by halting every CPU ("Hardware Dom0 halted: halting machine"), not
    /// by powering the machine off: measured on Xen 4.17 under QEMU, which
    /// then ran on until killed. Powering off is the hardware domain's own
    /// ACPI S5 write, so [`Xen::new`] withdraws that step and the chain
    /// falls through to the native routine.
    pub fn hardware_domain(&self) -> bool {
        self.hardware_domain
    }

    /// The domain's E820 memory map from `XENMEM_memory_map`, into
    /// `regions`; how many entries Xen wrote. A PVH guest asks here when
    /// its `hvm_start_info` carries no map (Xen 4.17 gives a PVH dom0
    /// none), as Linux's PVH entry does. Xen writes packed 20-byte E820
    /// entries (addr, size, type).
    pub fn memory_map(&self, regions: &mut [MemoryRegion]) -> Result<usize, PvError> {
        const ENTRY: usize = 20;
        const MAX: usize = 128;
        let mut raw = [0u8; ENTRY * MAX];
        let capacity = regions.len().min(MAX);
        let mut map = xen_memory_map {
            nr_entries: capacity as u32,
            buffer: platform::gpa(raw.as_mut_ptr() as usize),
            ..xen_memory_map::ZERO
        };
        // SAFETY: Xen is the hypervisor; `map` names a buffer of
        // `nr_entries` 20-byte entries that lives until the call returns.
        let done = unsafe {
            self.hypercalls
                .hypervisor_memory_op(xen::XENMEM_memory_map, core::ptr::from_mut(&mut map) as u64)
        };
        match done {
            Ok(0) => {}
            Ok(code) => return Err(PvError::new(ErrorKind::Failed, ErrorOrigin::Xen(code))),
            Err(e) => return Err(e),
        }
        let written = (map.nr_entries as usize).min(capacity);
        for (region, bytes) in regions
            .iter_mut()
            .zip(raw.chunks_exact(ENTRY))
            .take(written)
        {
            let field = |at: usize| {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(&bytes[at..at + 8]);
                u64::from_le_bytes(eight)
            };
            *region = MemoryRegion {
                addr: field(0),
                size: field(8),
                kind: u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]),
            };
        }
        Ok(written)
    }

    /// The domain's PV console ring and its port, from
    /// `HVM_PARAM_CONSOLE_PFN`/`HVM_PARAM_CONSOLE_EVTCHN`, where the
    /// platform maps the ring's page.
    fn console_ring(hypercalls: &Hypercalls) -> Result<XenConsole, PvError> {
        let get = |index| {
            let mut param = xen_hvm_param {
                domid: xen::DOMID_SELF,
                pad: 0,
                index,
                value: 0,
            };
            // SAFETY: Xen is the hypervisor; it fills the struct, which
            // lives until the call returns.
            let done = unsafe {
                hypercalls
                    .hypervisor_hvm_op(xen::HVMOP_get_param, core::ptr::from_mut(&mut param) as u64)
            };
            done.map(|_| param.value)
        };
        let pfn = get(xen::HVM_PARAM_CONSOLE_PFN)?;
        let port = get(xen::HVM_PARAM_CONSOLE_EVTCHN)?;
        let ring = platform::get()
            .and_then(|p| p.map_gpa(pfn << 12))
            .filter(|_| pfn != 0 && port != 0)
            .ok_or_else(xen::unsupported)?;
        Ok(XenConsole {
            ring,
            port: port as u32,
        })
    }

    /// Run `read` on the time info unless it is retired; the read that
    /// retires it also withdraws the timer steps.
    fn guard_time_info<T>(&self, read: impl FnOnce() -> Result<T, PvError>) -> Result<T, PvError> {
        let was_retired = TIME_INFO_RETIRED.is_retired();
        let result = TIME_INFO_RETIRED.guard(unstable(), read);
        if result.is_err() && !was_retired {
            self.withdraw_timer(unstable());
        }
        result
    }

    /// Xen's single-shot timer takes deadlines in Xen system time, the
    /// time vcpu_time_info gives. Without it `clock_ns` is the native
    /// clock, whose deadlines Xen would misread: the timer steps go.
    fn withdraw_timer(&self, why: PvError) {
        let plan = xen::plan_at(&self.features, self.version);
        crate::withdrawn::withdraw_planned(&plan, Op::TimerOneshot, why);
        crate::withdrawn::withdraw_planned(&plan, Op::TimerCancel, why);
    }

    /// This CPU's vcpu_time_info inside shared_info (the first 32 vCPUs).
    fn time_info(&self) -> Result<*const pvclock_vcpu_time_info, PvError> {
        if !self.shared_info {
            return Err(xen::unsupported());
        }
        crate::xen_time::time_info(SHARED_INFO.0.get(), platform::cpu_index())
    }
}

// SAFETY: a `Xen` is only made by `Xen::new`, whose contract is that Xen is
// the hypervisor.
unsafe impl Steps for Xen {
    type Native = BareMetal;

    fn features(&self) -> &Features {
        &self.features
    }

    fn hv_version(&self) -> Option<(u32, u32, u32)> {
        self.version
    }

    fn hypercalls(&self) -> Hypercalls {
        self.hypercalls
    }

    fn this_cpu(&self) -> u64 {
        platform::cpu_index() as u64
    }

    fn cpuid(&self, leaf: u32) -> [u32; 4] {
        cpuid(self.choice.leaf(leaf), 0).to_array()
    }

    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        let record = self.time_info()?;
        self.guard_time_info(|| {
            // SAFETY: this vCPU's time info inside the mapped shared_info.
            unsafe { pvclock::now(record, rdtsc) }.map_err(|_| unstable())
        })
    }

    fn tsc_hz_step1(&self) -> Result<Hertz, PvError> {
        let record = self.time_info()?;
        let snapshot = self.guard_time_info(|| {
            // SAFETY: as above.
            unsafe { pvclock::read(record) }.map_err(|_| unstable())
        })?;
        snapshot.tsc_hz().ok_or_else(xen::unsupported)
    }

    /// shared_info's wall clock (wc_*, under wc_version) plus system time.
    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        let now = self.clock_ns_step1()?;
        // SAFETY: the shared_info Xen mapped at the static (`time_info`
        // above succeeded only if it did).
        unsafe { crate::xen_time::wallclock(SHARED_INFO.0.get(), now, unstable()) }
    }

    /// Time runnable or offline (Linux's definition of stolen time).
    fn steal_ns_step1(&self) -> Result<Nanos, PvError> {
        RUNSTATES.stolen(platform::cpu_index())
    }

    /// Into the PV console ring, which xenconsoled reads.
    fn console_write_step1(&self, data: &[u8]) -> Result<(), PvError> {
        let console = self.console.ok_or_else(xen::unsupported)?;
        console.write(&self.hypercalls, data)
    }

    fn vcpu_is_preempted_step1(&self, cpu: ApicId) -> Result<bool, PvError> {
        let index = platform::get()
            .and_then(|p| p.cpu_of_apic(cpu))
            .ok_or_else(xen::unsupported)?;
        RUNSTATES.preempted(index)
    }
}

// The hooks the registry (`crate::registry`) calls for every backend.
impl HypervisorBackend for Xen {
    fn memory_map(&self, regions: &mut [MemoryRegion]) -> Option<Result<usize, PvError>> {
        Some(Xen::memory_map(self, regions))
    }

    /// Set up the Xen that detection found: hypercall page, shared_info.
    ///
    /// # Safety
    ///
    /// `choice` must be Xen's, in ring 0, once; the kernel maps this crate's
    /// statics as the module doc says.
    unsafe fn new(choice: &Choice) -> Xen {
        let features = Features::read(|leaf| cpuid(choice.leaf(leaf), 0).to_array());
        let pages = cpuid(choice.leaf(xen::XEN_CPUID_HYPERCALL), 0);
        let page = HYPERCALL_PAGE.0.get() as *const u8;
        if pages.eax >= 1 {
            // SAFETY: CPUID names the MSR that takes the hypercall page's
            // address; the page is a static, page-aligned, for Xen to fill.
            unsafe { wrmsr(pages.ebx, platform::gpa(page as usize)) };
        }
        // SAFETY: setup, on the boot CPU, once: no hypercall is in flight,
        // and the page is this crate's static.
        let bytes = unsafe { &mut *HYPERCALL_PAGE.0.get() };
        if crate::hypercall_page::is_empty(bytes) {
            crate::hypercall_page::fill_with_refusals(bytes, 32, -(xen::XEN_ENOSYS as i32));
            fallback::record_setup(0, xen::unsupported());
        }
        // SAFETY: Xen filled the page when the MSR was written (or, if it
        // did not, every stub now returns -ENOSYS).
        let hypercalls = unsafe { Hypercalls::new(page) };
        let map = xen_add_to_physmap {
            domid: xen::DOMID_SELF,
            size: 0,
            space: xen::XENMAPSPACE_shared_info,
            idx: 0,
            gpfn: platform::gpa(SHARED_INFO.0.get() as usize) >> 12,
        };
        // SAFETY: Xen is the hypervisor; the argument is a valid
        // xen_add_to_physmap naming a static, page-aligned page.
        let mapped = unsafe {
            hypercalls
                .hypervisor_memory_op(xen::XENMEM_add_to_physmap, core::ptr::from_ref(&map) as u64)
        };
        // Event upcalls arrive on the platform's upcall vector (its timer
        // vector, if the two are one); the only event the backend binds is
        // each vCPU's VIRQ_TIMER.
        if let Some(vector) = platform::get().map(|p| p.vectors().upcall) {
            let param = xen_hvm_param {
                domid: xen::DOMID_SELF,
                pad: 0,
                index: xen::HVM_PARAM_CALLBACK_IRQ,
                value: u64::from(xen::HVM_PARAM_CALLBACK_TYPE_VECTOR) << 56 | u64::from(vector),
            };
            // SAFETY: Xen is the hypervisor; a valid xen_hvm_param.
            let _ = unsafe {
                hypercalls
                    .hypervisor_hvm_op(xen::HVMOP_set_param, core::ptr::from_ref(&param) as u64)
            };
        }
        let mut submap0 = xen_feature_info {
            submap_idx: 0,
            submap: 0,
        };
        // SAFETY: Xen is the hypervisor; it fills the struct, which lives
        // until the call returns.
        let asked = unsafe {
            hypercalls.hypervisor_xen_version(
                xen::XENVER_get_features,
                core::ptr::from_mut(&mut submap0) as u64,
            )
        };
        let console = Self::console_ring(&hypercalls);
        let xen = Xen {
            features,
            hypercalls,
            choice: *choice,
            shared_info: pages.eax >= 1 && mapped == Ok(0),
            version: version_from_leaf(cpuid(choice.leaf(xen::XEN_CPUID_VERSION), 0).eax),
            hardware_domain: asked == Ok(0) && submap0.submap & (1 << xen::XENFEAT_dom0) != 0,
            console: console.ok(),
        };
        if let Err(why) = console {
            // No ring (the hardware domain has none): each write would ask
            // again and log the same answer.
            let plan = xen::plan_at(&xen.features, xen.version);
            crate::withdrawn::withdraw_planned(&plan, Op::ConsoleWrite, why);
        }
        if xen.hardware_domain {
            // The planned step is SCHEDOP_shutdown(SHUTDOWN_poweroff): see
            // `hardware_domain`. Code 0: pvi's verdict, not Xen's answer.
            let plan = xen::plan_at(&xen.features, xen.version);
            crate::withdrawn::withdraw_planned(&plan, Op::Shutdown, xen::unsupported());
        }
        if !xen.shared_info {
            let why = mapped.err().unwrap_or_else(xen::unsupported);
            // Their records live in shared_info: without it they would
            // fail on every call, and the log would count each one.
            let plan = xen::plan_at(&xen.features, xen.version);
            for op in [Op::ClockNs, Op::TscHz, Op::Wallclock] {
                crate::withdrawn::withdraw_planned(&plan, op, why);
            }
            xen.withdraw_timer(why);
        }
        xen
    }

    /// A vCPU's record is its runstate area, which Xen writes when the
    /// vCPU registers it (and on every switch after).
    fn cpu_record_written(&self, cpu: usize) -> Option<bool> {
        RUNSTATES.written(cpu)
    }

    fn init_cpu(&self) {
        let cpu = platform::cpu_index();
        RUNSTATES.register(&self.hypercalls, cpu);
        TIMER_PORT.bind(&self.hypercalls, cpu);
    }

    /// With the upcall on the timer's vector, the timer's handler
    /// acknowledges the event; with a vector of its own, the upcall's
    /// handler does, and the timer vector is the native timer's alone.
    fn timer_interrupt(&self) {
        if platform::get().is_some_and(|p| p.vectors().upcall == p.vectors().timer) {
            self.acknowledge_timer_event();
        }
    }

    fn upcall_interrupt(&self) -> Upcall {
        Upcall {
            timer: self.acknowledge_timer_event(),
            ..Upcall::default()
        }
    }

    /// Until xenconsoled has read the PV console ring, yielding to it: a
    /// domain that powers off right after writing would otherwise be
    /// destroyed with its last lines unread (seen in CI: a domU's final
    /// self-test lines missing from its console log).
    fn flush_console(&self) -> bool {
        self.console.is_none_or(|c| c.drain(&self.hypercalls))
    }
}

impl Xen {
    /// Acknowledge this vCPU's timer event (`xen_events`); whether it
    /// was pending.
    fn acknowledge_timer_event(&self) -> bool {
        let cpu = platform::cpu_index();
        if !self.shared_info || cpu >= xen::XEN_LEGACY_MAX_VCPUS as usize {
            return false;
        }
        let info = SHARED_INFO.0.get();
        // SAFETY: shared_info is mapped at the static (checked above), the
        // vCPU's vcpu_info lies in it (bounds checked), and the upcall
        // handler runs on the vCPU it acknowledges.
        unsafe { TIMER_PORT.acknowledge(info, core::ptr::addr_of_mut!((*info).vcpu_info[cpu]), cpu) }
    }
}

/// The Xen backend's ops.
pub type Ops = xen::Paravirt<Xen>;
