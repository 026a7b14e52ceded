//! Xen PV (64-bit PV guests, the kernel in ring 3): the backend a kernel
//! builds after it came in through Xen's PV entry and handed the backends
//! what Xen gave it ([`crate::entry::xen_pv`]). Shared info is mapped from the machine
//! address start_info names (update_va_mapping), page-table entries are
//! written through mmu_update with their frames translated through
//! start_info's page-frame list, local TLB flushes go through mmuext_op,
//! and the fault address is read from vcpu_info. Console, yield and
//! shutdown are the generated chains' hypercalls.
//!
//! A PV kernel's "physical" addresses are pseudo-physical: frame numbers
//! of its own, which start_info's `mfn_list` maps to machine frames. The
//! ops keep the meaning they have on every other platform (an entry's
//! frame is the kernel's own frame number); this backend translates.

use crate::fallback;
use crate::xen_runstate::RUNSTATES;
use crate::native::BareMetal;
use crate::percpu::{Shared, MAX_CPUS};
use crate::platform;
use crate::registry::HypervisorBackend;
use crate::select::Upcall;
use crate::xen_console::XenConsole;
use core::sync::atomic::{compiler_fence, AtomicU8, AtomicUsize, Ordering::SeqCst};
use pvi_sdk::arch::rdtsc;
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::ops::Op;
use pvi_sdk::generated::xen_pv::{self as xen, Features, Hypercalls, Steps};
use pvi_sdk::time::pvclock;
use pvi_sdk::types::{
    mmu_update, mmuext_op, pvclock_vcpu_time_info, shared_info, start_info, vcpu_guest_context,
    vcpu_info, vcpu_register_vcpu_info, xencons_interface, ApicId, CpuSet, ErrorKind, ErrorOrigin,
    Gpa, Hertz, IrqFlags, Nanos, PvError, Vector,
};

#[repr(C, align(4096))]
struct SharedInfoPage(Shared<shared_info>);
/// The page whose mapping update_va_mapping replaces with shared_info's
/// machine frame: its own frame is left unused.
static SHARED_INFO: SharedInfoPage = SharedInfoPage(Shared::new(shared_info::ZERO));
/// Each vCPU's VIRQ_TIMER port.
static TIMER_PORT: crate::xen_events::TimerPorts = crate::xen_events::TimerPorts::new();
/// Each vCPU's IPI port, and the vectors sent to it.
static IPI: crate::xen_events::IpiPorts = crate::xen_events::IpiPorts::new();
/// Where each vCPU's vcpu_info lives once registered in its CPU area
/// (VCPUOP_register_vcpu_info); 0 while it is shared_info's.
static CPU_AREAS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// An entry's frame field: bits 51:12.
const FRAME: u64 = 0x000f_ffff_ffff_f000;
/// The present bit of a page-table entry.
const PRESENT: u64 = 1;
/// Present, writable, accessed, dirty: how shared_info and a released
/// table are mapped (Linux's PAGE_KERNEL without NX; Xen adds the user
/// bit a ring-3 kernel needs).
const KERNEL_WRITABLE: u64 = 0x63;
/// Present, accessed: how a page table is mapped while Xen holds it.
const KERNEL_READ_ONLY: u64 = 0x21;
/// Xen's "no entry" in the page-frame list (Linux INVALID_P2M_ENTRY).
const INVALID_FRAME: u64 = !0;

fn unstable() -> PvError {
    PvError::new(ErrorKind::Busy, ErrorOrigin::Xen(0))
}

fn invalid() -> PvError {
    PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Xen(0))
}

/// `value` (a page-table entry naming pseudo-physical frame `f`) with `f`
/// replaced by `machine(f)`: what a PV guest's tables must hold. A
/// non-present entry is written as given (its other bits are the
/// kernel's). `None` when the frame has no machine frame.
pub fn machine_entry(value: u64, machine: impl Fn(u64) -> Option<u64>) -> Option<u64> {
    if value & PRESENT == 0 {
        return Some(value);
    }
    let mfn = machine((value & FRAME) >> 12)?;
    (mfn << 12 & !FRAME == 0).then_some(value & !FRAME | mfn << 12)
}

/// The mmuext_op requests that flush `pages` pages from `start` on this
/// vCPU, into `out`; how many. One MMUEXT_INVLPG_LOCAL per page, or one
/// MMUEXT_TLB_FLUSH_LOCAL past the native routine's ceiling (the same
/// figure, so both flush alike), in one hypercall either way.
pub fn flush_requests(start: u64, pages: u64, out: &mut [mmuext_op]) -> usize {
    let ceiling = crate::native::flush::FULL_FLUSH_PAGES;
    if pages > ceiling || pages > out.len() as u64 {
        out[0] = mmuext_op {
            cmd: xen::MMUEXT_TLB_FLUSH_LOCAL,
            ..mmuext_op::ZERO
        };
        return 1;
    }
    for (page, op) in out.iter_mut().take(pages as usize).enumerate() {
        *op = mmuext_op {
            cmd: xen::MMUEXT_INVLPG_LOCAL,
            arg1: start.wrapping_add(page as u64 * 4096),
            ..mmuext_op::ZERO
        };
    }
    pages as usize
}

/// The vCPU bitmap of `targets` (APIC ids, which are vCPU ids on Xen PV,
/// through the platform's `cpu_of_apic`) for a *_MULTI flush.
fn vcpu_mask(targets: CpuSet) -> Result<u64, PvError> {
    let platform = platform::get().ok_or_else(invalid)?;
    let mut mask = 0u64;
    for apic in (0..64u32).filter(|a| targets.0 & 1 << a != 0) {
        let cpu = platform
            .cpu_of_apic(ApicId(apic))
            .filter(|&c| c < 64)
            .ok_or_else(invalid)?;
        mask |= 1 << cpu;
    }
    Ok(mask)
}

/// CPUID through Xen's forced-emulation prefix (`ud2; .ascii "xen"`):
/// Xen emulates the instruction with its own leaves, where a ring-3
/// kernel's plain CPUID may run on the host CPU unseen.
/// Source: Xen xen/include/public/arch-x86/xen.h (XEN_EMULATE_PREFIX).
fn forced_cpuid(leaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: only a Xen PV guest builds this backend (detection by the PV
    // entry), and Xen emulates the prefixed CPUID for every PV guest; the
    // asm writes only its output registers (rbx through a scratch one).
    unsafe {
        core::arch::asm!(
            "mov {scratch:r}, rbx",
            "ud2",
            ".ascii \"xen\"",
            "cpuid",
            "xchg {scratch:r}, rbx",
            scratch = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") 0u32 => c,
            out("edx") d,
            options(nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}

/// The Xen PV backend.
#[derive(Clone, Copy, Debug)]
pub struct XenPv {
    features: Features,
    hypercalls: Hypercalls,
    /// start_info's page-frame list (virtual address) and its length.
    frames: Option<(usize, u64)>,
    shared_info: bool,
    hardware_domain: bool,
    /// The PV console ring and its event channel.
    console: Option<XenConsole>,
}

impl XenPv {
    /// Whether this domain is Xen's hardware domain (start_info's
    /// SIF_INITDOMAIN).
    pub fn hardware_domain(&self) -> bool {
        self.hardware_domain
    }

    /// Whether vCPU `cpu` exists in this domain (VCPUOP_is_up answers 0
    /// or 1; -ENOENT for one it does not have) and runs.
    pub fn vcpu_is_up(&self, cpu: u32) -> Result<bool, PvError> {
        // SAFETY: Xen is the hypervisor; the sub-op takes no argument.
        let up = unsafe {
            self.hypercalls
                .hypervisor_vcpu_op(xen::VCPUOP_is_up, cpu, 0)
        }?;
        Ok(up != 0)
    }

    /// Start vCPU `cpu`, which is down, at `entry` in ring 3 as if called
    /// with `arg` (rdi), its stack pointer `stack` less a return address,
    /// the page tables rooted at `root` (a pinned L4), as Linux's
    /// cpu_initialize_context and VCPUOP_up do. It starts with events
    /// masked, Xen's flat segments, no GS base and no trap table: its
    /// first acts must be to set its GS base (`gs_base_set`), load its IDT
    /// (`trap_table_load`) and register its records (`init_cpu`), as the
    /// boot vCPU's were.
    ///
    /// # Safety
    ///
    /// `cpu_start`'s contract: `entry` runs on a vCPU of its own with
    /// `stack` (the top of memory no one else uses); the root maps it, the
    /// kernel and every object that code touches.
    unsafe fn start_vcpu(
        &self,
        cpu: u32,
        entry: u64,
        stack: u64,
        root: Gpa,
        arg: u64,
    ) -> Result<(), PvError> {
        let root = self.machine_frame(root.0 >> 12).ok_or_else(invalid)?;
        let mut context = vcpu_guest_context::ZERO;
        context.flags = xen::VGCF_in_kernel;
        context.user_regs.rip = entry;
        // As if called: the C ABI's alignment at a function's entry.
        context.user_regs.rsp = stack - 8;
        context.user_regs.rdi = arg;
        context.user_regs.cs = xen::FLAT_KERNEL_CS;
        context.user_regs.ss = xen::FLAT_KERNEL_SS;
        context.user_regs.saved_upcall_mask = 1;
        context.kernel_ss = u64::from(xen::FLAT_KERNEL_SS);
        context.kernel_sp = stack;
        context.ctrlreg[3] = root << 12;
        // SAFETY: Xen is the hypervisor and validates the context (the
        // root's type, canonical addresses, selectors); it reads it
        // before the call returns; the caller's contract covers what the
        // vCPU then runs.
        unsafe {
            self.hypercalls.hypervisor_vcpu_op(
                xen::VCPUOP_initialise,
                cpu,
                core::ptr::from_ref(&context) as u64,
            )
        }?;
        // SAFETY: as above: the vCPU runs what the context says.
        unsafe { self.hypercalls.hypervisor_vcpu_op(xen::VCPUOP_up, cpu, 0) }.map(|_| ())
    }

    /// The machine frame of pseudo-physical frame `pfn`.
    fn machine_frame(&self, pfn: u64) -> Option<u64> {
        let (list, len) = self.frames?;
        if pfn >= len {
            return None;
        }
        // SAFETY: start_info's page-frame list, `len` (nr_pages) entries,
        // mapped read-only by Xen for the domain's life; in bounds.
        let mfn = unsafe { (list as *const u64).add(pfn as usize).read_volatile() };
        (mfn != INVALID_FRAME).then_some(mfn)
    }

    /// The machine address of the kernel's virtual address `va`.
    fn machine_address(&self, va: u64) -> Option<u64> {
        let gpa = platform::gpa(va as usize);
        Some(self.machine_frame(gpa >> 12)? << 12 | va & 0xfff)
    }

    /// The pseudo-physical frame of machine frame `mfn`, through Xen's
    /// read-only machine-to-physical table, checked both ways as Linux's
    /// mfn_to_pfn does; the frame is first bounded by the host's RAM, so
    /// that a garbage frame cannot make the read fault.
    fn pseudo_frame(hypercalls: &Hypercalls, frames: (usize, u64), mfn: u64) -> Option<u64> {
        // SAFETY: Xen is the hypervisor; the sub-op takes no argument.
        let max = unsafe { hypercalls.hypervisor_memory_op(xen::XENMEM_maximum_ram_page, 0) };
        if mfn == 0 || !matches!(max, Ok(max) if (mfn as i64) <= max) {
            return None;
        }
        let m2p = xen::MACH2PHYS_VIRT_START as *const u64;
        // SAFETY: Xen maps the machine-to-physical table read-only into
        // every PV guest at MACH2PHYS_VIRT_START, an entry per machine frame
        // of RAM; `mfn` is at most the highest one.
        let pfn = unsafe { m2p.add(mfn as usize).read_volatile() };
        let (list, len) = frames;
        if pfn >= len {
            return None;
        }
        // SAFETY: the page-frame list, in bounds (as in `machine_frame`).
        let back = unsafe { (list as *const u64).add(pfn as usize).read_volatile() };
        (back == mfn).then_some(pfn)
    }

    /// This vCPU's vcpu_time_info, in its vcpu_info.
    fn time_info(&self) -> Result<*const pvclock_vcpu_time_info, PvError> {
        let info = self.vcpu_info()?;
        // SAFETY: a field address inside the record (no access);
        // vcpu_time_info has pvclock's layout (idl/xen.pvi).
        Ok(unsafe { core::ptr::addr_of!((*info).time) }.cast())
    }

    /// The kernel's mapping of the page table at `table` and its machine
    /// frame.
    fn table(&self, table: Gpa) -> Result<(usize, u64), PvError> {
        if table.0 & 0xfff != 0 {
            return Err(invalid());
        }
        let va = platform::get()
            .and_then(|p| p.map_gpa(table.0))
            .ok_or_else(invalid)?;
        let mfn = self.machine_frame(table.0 >> 12).ok_or_else(invalid)?;
        Ok((va, mfn))
    }

    /// Map the kernel's page at `va` (machine frame `mfn`) read-only or
    /// writable.
    ///
    /// # Safety
    ///
    /// `va` is the kernel's only mapping of a page no Rust reference
    /// writes while it is read-only.
    unsafe fn remap(&self, va: usize, mfn: u64, writable: bool) -> Result<(), PvError> {
        let flags = if writable {
            KERNEL_WRITABLE
        } else {
            KERNEL_READ_ONLY
        };
        // SAFETY: Xen is the hypervisor and validates the entry; the
        // caller's contract says nothing writes the page meanwhile.
        let done = unsafe {
            self.hypercalls
                .hypervisor_update_va_mapping(va as u64, mfn << 12 | flags, xen::UVMF_INVLPG)
        };
        done.map(|_| ())
    }

    /// One mmuext_op request: `cmd` on machine frame (or address) `arg1`.
    ///
    /// # Safety
    ///
    /// As the command needs: a pin or unpin of a table the kernel gave up
    /// writing directly, a base pointer that maps what runs.
    unsafe fn mmuext(&self, cmd: u32, arg1: u64) -> Result<(), PvError> {
        let request = mmuext_op {
            cmd,
            arg1,
            ..mmuext_op::ZERO
        };
        // SAFETY: the caller's contract covers the request's effect.
        unsafe { self.mmuext_requests(core::slice::from_ref(&request)) }
    }

    /// `requests`, in one mmuext_op call.
    ///
    /// # Safety
    ///
    /// As each request's command needs (a flush needs nothing); what their
    /// pointers (a vcpumask) name lives until the call returns.
    unsafe fn mmuext_requests(&self, requests: &[mmuext_op]) -> Result<(), PvError> {
        // SAFETY: Xen is the hypervisor and validates every request; the
        // caller's contract covers their effect; they live until the call
        // returns.
        let done = unsafe {
            self.hypercalls.hypervisor_mmuext_op(
                requests.as_ptr() as u64,
                requests.len() as u32,
                0,
                xen::DOMID_SELF,
            )
        };
        done.map(|_| ())
    }

    /// This vCPU's vcpu_info: in its CPU area once registered there, where
    /// Xen then keeps it (and no longer in shared_info); before, inside the
    /// mapped shared_info.
    fn vcpu_info(&self) -> Result<*mut vcpu_info, PvError> {
        let cpu = platform::cpu_index();
        let registered = CPU_AREAS.get(cpu).map_or(0, |a| a.load(SeqCst));
        if registered != 0 {
            return Ok(registered as *mut vcpu_info);
        }
        if !self.shared_info || cpu >= xen::XEN_LEGACY_MAX_VCPUS as usize {
            return Err(xen::unsupported());
        }
        let info = SHARED_INFO.0.get();
        // SAFETY: only the address of an element, in bounds (checked above).
        Ok(unsafe { core::ptr::addr_of_mut!((*info).vcpu_info[cpu]) })
    }

    /// This vCPU's evtchn_upcall_mask and evtchn_upcall_pending.
    fn event_flags(&self) -> Result<(&'static AtomicU8, &'static AtomicU8), PvError> {
        let info = self.vcpu_info()?;
        // SAFETY: bytes of this vCPU's vcpu_info in the mapped static
        // shared_info, which Xen and the guest share through atomic
        // accesses (the event-channel ABI), for the kernel's life.
        unsafe {
            Ok((
                AtomicU8::from_ptr(core::ptr::addr_of_mut!((*info).evtchn_upcall_mask)),
                AtomicU8::from_ptr(core::ptr::addr_of_mut!((*info).evtchn_upcall_pending)),
            ))
        }
    }

    /// Have Xen deliver the events pending on this vCPU: any hypercall
    /// does, on its way back (Linux xen_force_evtchn_callback asks
    /// xen_version).
    fn deliver_pending(&self) {
        // SAFETY: Xen is the hypervisor; XENVER_version takes no argument.
        let _ = unsafe { self.hypercalls.hypervisor_xen_version(xen::XENVER_version, 0) };
    }

    /// Have Xen keep vCPU `cpu`'s (the calling one's) vcpu_info in the
    /// kernel's CPU area for it (`Platform::cpu_area`), as Linux's
    /// xen_vcpu_setup does; Xen copies the current one there and marks
    /// every event pending once (a spurious upcall). Once per vCPU.
    fn register_vcpu_info(&self, cpu: usize) -> Result<(), PvError> {
        const _: () = assert!(core::mem::size_of::<vcpu_info>() <= pvi_sdk::cpu_area::CPU_AREA_SIZE);
        let slot = CPU_AREAS.get(cpu).ok_or_else(invalid)?;
        let area = platform::get()
            .and_then(|p| p.cpu_area())
            .ok_or_else(xen::unsupported)?;
        let machine = self.machine_address(area as u64).ok_or_else(invalid)?;
        let request = vcpu_register_vcpu_info {
            mfn: machine >> 12,
            offset: (machine & 0xfff) as u32,
            rsvd: 0,
        };
        // SAFETY: Xen is the hypervisor; the area is the kernel's, 64
        // bytes it never touches (the `cpu_area` contract), which Xen
        // writes from now on; the request lives until the call returns.
        let done = unsafe {
            self.hypercalls.hypervisor_vcpu_op(
                xen::VCPUOP_register_vcpu_info,
                cpu as u32,
                core::ptr::from_ref(&request) as u64,
            )
        };
        done.map(|_| slot.store(area, SeqCst))
    }

    /// Map shared_info's machine frame at this module's page.
    fn map_shared_info(hypercalls: &Hypercalls, machine_address: u64) -> Result<(), PvError> {
        if machine_address == 0 || machine_address & 0xfff != 0 {
            return Err(invalid());
        }
        let va = SHARED_INFO.0.get() as u64;
        // SAFETY: Xen is the hypervisor; the page is this module's static,
        // which nothing references while its mapping changes (setup, once),
        // and the new entry maps shared_info, which Xen lets every domain
        // map writable.
        let done = unsafe {
            hypercalls.hypervisor_update_va_mapping(
                va,
                machine_address | KERNEL_WRITABLE,
                xen::UVMF_INVLPG,
            )
        };
        done.map(|_| ())
    }
}

// SAFETY: a `XenPv` is only made by `XenPv::new`, whose contract is that
// Xen is the hypervisor and the kernel is its PV guest.
unsafe impl Steps for XenPv {
    type Native = BareMetal;

    fn features(&self) -> &Features {
        &self.features
    }

    fn hypercalls(&self) -> Hypercalls {
        self.hypercalls
    }

    fn this_cpu(&self) -> u64 {
        platform::cpu_index() as u64
    }

    fn mask_events(&self) -> Result<(), PvError> {
        let (mask, _) = self.event_flags()?;
        mask.store(1, SeqCst);
        // What follows runs with events held back: keep it after the store.
        compiler_fence(SeqCst);
        Ok(())
    }

    fn unmask_events(&self) -> Result<(), PvError> {
        let (mask, pending) = self.event_flags()?;
        compiler_fence(SeqCst);
        mask.store(0, SeqCst);
        if pending.load(SeqCst) != 0 {
            self.deliver_pending();
        }
        Ok(())
    }

    fn save_and_mask_events(&self) -> Result<IrqFlags, PvError> {
        let (mask, _) = self.event_flags()?;
        let was_masked = mask.swap(1, SeqCst) != 0;
        compiler_fence(SeqCst);
        Ok(if was_masked {
            IrqFlags::empty()
        } else {
            IrqFlags::IF
        })
    }

    fn restore_event_mask(&self, flags: IrqFlags) -> Result<(), PvError> {
        if flags.contains(IrqFlags::IF) {
            self.unmask_events()
        } else {
            self.mask_events()
        }
    }

    fn send_ipi_by_event_channel(&self, targets: CpuSet, vector: Vector) -> Result<(), PvError> {
        let platform = platform::get();
        let cpus = (0..64u32)
            .filter(|a| targets.0 & 1 << a != 0)
            .map(|apic| platform.and_then(|p| p.cpu_of_apic(ApicId(apic))));
        IPI.send_many(&self.hypercalls, cpus, vector.0)
    }

    fn kick_by_event_channel(&self, target: ApicId) -> Result<(), PvError> {
        let platform = platform::get().ok_or_else(invalid)?;
        let cpu = platform.cpu_of_apic(target).ok_or_else(invalid)?;
        IPI.send(&self.hypercalls, cpu, platform.vectors().kick)
    }

    fn block_or_down(&self) -> Result<(), PvError> {
        let (mask, _) = self.event_flags()?;
        if mask.load(SeqCst) != 0 {
            // SAFETY: Xen is the hypervisor; this vCPU stops until another ups it, which is what `halt` with interrupts off means.
            let down = unsafe {
                self.hypercalls.hypervisor_vcpu_op(
                    xen::VCPUOP_down,
                    platform::cpu_index() as u32,
                    0,
                )
            };
            return down.map(|_| ());
        }
        // SAFETY: Xen is the hypervisor; SCHEDOP_block takes no argument.
        unsafe { self.hypercalls.hypervisor_sched_op(xen::SCHEDOP_block, 0) }.map(|_| ())
    }

    fn events_need_no_eoi(&self) -> Result<(), PvError> {
        Ok(())
    }

    fn xencons_interface(&self) -> Option<core::ptr::NonNull<xencons_interface>> {
        self.console
            .and_then(|c| core::ptr::NonNull::new(c.ring as *mut xencons_interface))
    }

    fn clock_ns_step1(&self) -> Result<Nanos, PvError> {
        let record = self.time_info()?;
        // SAFETY: this vCPU's time info inside the mapped shared_info.
        unsafe { pvclock::now(record, rdtsc) }.map_err(|_| unstable())
    }

    fn tsc_hz_step1(&self) -> Result<Hertz, PvError> {
        let record = self.time_info()?;
        // SAFETY: as above.
        let snapshot = unsafe { pvclock::read(record) }.map_err(|_| unstable())?;
        snapshot.tsc_hz().ok_or_else(xen::unsupported)
    }

    /// shared_info's wall clock (wc_*, under wc_version) plus system time.
    fn wallclock_step1(&self) -> Result<Nanos, PvError> {
        let now = self.clock_ns_step1()?;
        // SAFETY: shared_info, mapped at the static (`time_info` above
        // succeeded only if it was).
        unsafe { crate::xen_time::wallclock(SHARED_INFO.0.get(), now, unstable()) }
    }

    /// Into the PV console ring, which xenconsoled reads.
    fn console_write_step1(&self, data: &[u8]) -> Result<(), PvError> {
        let console = self.console.ok_or_else(xen::unsupported)?;
        console.write(&self.hypercalls, data)
    }

    unsafe fn write_entry_by_mmu_update(&self, entry: u64, value: u64) -> Result<(), PvError> {
        let ptr = self.machine_address(entry).ok_or_else(invalid)?;
        let val = machine_entry(value, |pfn| self.machine_frame(pfn)).ok_or_else(invalid)?;
        let request = mmu_update {
            ptr: ptr | u64::from(xen::MMU_NORMAL_PT_UPDATE),
            val,
        };
        // SAFETY: Xen is the hypervisor and validates the update; the
        // caller's contract (the op's) says the entry is the kernel's and
        // the mapping breaks nothing in use; the request lives until the
        // call returns.
        let done = unsafe {
            self.hypercalls.hypervisor_mmu_update(
                core::ptr::from_ref(&request) as u64,
                1,
                0,
                xen::DOMID_SELF,
            )
        };
        done.map(|_| ())
    }

    fn flush_multi_by_mmuext_op(&self, targets: CpuSet) -> Result<(), PvError> {
        let mask = vcpu_mask(targets)?;
        let request = mmuext_op {
            cmd: xen::MMUEXT_TLB_FLUSH_MULTI,
            arg2: core::ptr::from_ref(&mask) as u64,
            ..mmuext_op::ZERO
        };
        // SAFETY: a flush, which changes no mapping; the bitmap lives
        // until the call returns.
        unsafe { self.mmuext_requests(core::slice::from_ref(&request)) }
    }

    fn flush_range_multi_by_mmuext_op(
        &self,
        targets: CpuSet,
        start: u64,
        pages: u64,
    ) -> Result<(), PvError> {
        let mask = vcpu_mask(targets)?;
        let mut requests = [mmuext_op::ZERO; crate::native::flush::FULL_FLUSH_PAGES as usize];
        let count = flush_requests(start, pages, &mut requests);
        for request in &mut requests[..count] {
            request.cmd = if request.cmd == xen::MMUEXT_INVLPG_LOCAL {
                xen::MMUEXT_INVLPG_MULTI
            } else {
                xen::MMUEXT_TLB_FLUSH_MULTI
            };
            request.arg2 = core::ptr::from_ref(&mask) as u64;
        }
        // SAFETY: flushes, which change no mapping; the bitmap lives
        // until the call returns.
        unsafe { self.mmuext_requests(&requests[..count]) }
    }

    fn flush_local_by_mmuext_op(&self, start: u64, pages: u64) -> Result<(), PvError> {
        let mut requests = [mmuext_op::ZERO; crate::native::flush::FULL_FLUSH_PAGES as usize];
        let count = flush_requests(start, pages, &mut requests);
        // SAFETY: local flush requests, which change no mapping.
        unsafe { self.mmuext_requests(&requests[..count]) }
    }

    unsafe fn pin_by_mmuext_op(&self, table: Gpa, level: u8) -> Result<(), PvError> {
        let cmd = match level {
            1 => xen::MMUEXT_PIN_L1_TABLE,
            2 => xen::MMUEXT_PIN_L2_TABLE,
            3 => xen::MMUEXT_PIN_L3_TABLE,
            4 => xen::MMUEXT_PIN_L4_TABLE,
            _ => return Err(invalid()),
        };
        let (va, mfn) = self.table(table)?;
        // SAFETY: the op's contract: the table is written only through
        // page_table_write from now on, so no reference writes it.
        unsafe { self.remap(va, mfn, false) }?;
        // SAFETY: a pin of the table the op's contract describes.
        let pinned = unsafe { self.mmuext(cmd, mfn) };
        if pinned.is_err() {
            // Xen found the table invalid: the page is the kernel's again.

            // SAFETY: the page is the kernel's only mapping of the table,
            // which nothing else holds.
            let _ = unsafe { self.remap(va, mfn, true) };
        }
        pinned
    }

    unsafe fn unpin_by_mmuext_op(&self, table: Gpa) -> Result<(), PvError> {
        let (va, mfn) = self.table(table)?;
        // SAFETY: the op's contract: the table is linked nowhere and is
        // no root in use.
        unsafe { self.mmuext(xen::MMUEXT_UNPIN_TABLE, mfn) }?;
        // SAFETY: unpinned, the page is an ordinary one of the kernel's.
        unsafe { self.remap(va, mfn, true) }
    }

    unsafe fn new_baseptr_by_mmuext_op(&self, root: Gpa) -> Result<(), PvError> {
        let mfn = self.machine_frame(root.0 >> 12).ok_or_else(invalid)?;
        // SAFETY: the op's contract: the root maps the running code, its
        // stack and every object in use.
        unsafe { self.mmuext(xen::MMUEXT_NEW_BASEPTR, mfn) }
    }

    unsafe fn set_trap_table_from_gates(&self, table: u64, entries: u16) -> Result<(), PvError> {
        let upcall = platform::get().map(|p| p.vectors().upcall);
        // SAFETY: the op's contract, and a `XenPv` exists only on Xen PV.
        unsafe { crate::xen_pv_traps::load(&self.hypercalls, table, entries, upcall) }
    }

    unsafe fn set_gdt_from_table(&self, table: u64, entries: u16) -> Result<(), PvError> {
        let entries = u32::from(entries);
        if !table.is_multiple_of(4096) || entries == 0 || entries > xen::FIRST_RESERVED_GDT_ENTRY {
            return Err(invalid());
        }
        let pages = entries.div_ceil(512) as usize;
        let mut frames = [0u64; 14];
        for (i, frame) in frames[..pages].iter_mut().enumerate() {
            let va = table as usize + i * 4096;
            *frame = self.machine_address(va as u64).ok_or_else(invalid)? >> 12;
        }
        let writable = |pages: usize| {
            for (i, &mfn) in frames[..pages].iter().enumerate() {
                // SAFETY: the table's own page (the contract), made read-only for Xen's check.
                let _ = unsafe { self.remap(table as usize + i * 4096, mfn, true) };
            }
        };
        for (i, &mfn) in frames[..pages].iter().enumerate() {
            // SAFETY: the table is alone in its pages and unchanged (the op's contract).
            if let Err(why) = unsafe { self.remap(table as usize + i * 4096, mfn, false) } {
                writable(i);
                return Err(why);
            }
        }
        // SAFETY: Xen validates the descriptors, the list outlives the call, per the op's contract.
        let loaded = unsafe {
            self.hypercalls
                .hypervisor_set_gdt(frames.as_ptr() as u64, entries)
        };
        if loaded.is_err() {
            // Refused: the pages are the kernel's again.
            writable(pages);
        }
        loaded.map(|_| ())
    }

    /// Nothing to do now: the crash shutdown that follows tells Xen.
    fn crash_told_by_shutdown(&self) -> Result<(), PvError> {
        Ok(())
    }

    /// The target's APIC id is its vCPU id on Xen PV.
    unsafe fn start_by_vcpu_op(
        &self,
        target: ApicId,
        entry: u64,
        stack: u64,
        root: Gpa,
        arg: u64,
    ) -> Result<(), PvError> {
        // SAFETY: the op's contract, which is start_vcpu's.
        unsafe { self.start_vcpu(target.0, entry, stack, root, arg) }
    }

    /// Time runnable or offline, from this vCPU's runstate area.
    fn steal_ns_step1(&self) -> Result<Nanos, PvError> {
        RUNSTATES.stolen(platform::cpu_index())
    }

    /// The target's runstate: runnable but not running. Its APIC id is
    /// its vCPU id on Xen PV.
    fn vcpu_is_preempted_step1(&self, cpu: ApicId) -> Result<bool, PvError> {
        let index = platform::get()
            .and_then(|p| p.cpu_of_apic(cpu))
            .ok_or_else(xen::unsupported)?;
        RUNSTATES.preempted(index)
    }

    fn cr2_from_vcpu_info(&self) -> Result<u64, PvError> {
        let info = self.vcpu_info()?;
        // SAFETY: a field of this vCPU's vcpu_info in the mapped
        // shared_info, which Xen writes before it bounces a page fault.
        Ok(unsafe { core::ptr::addr_of!((*info).arch.cr2).read_volatile() })
    }
}

// The hooks the registry (`crate::registry`) calls for every backend.
impl HypervisorBackend for XenPv {
    /// Set up from what the PV entry handed over: the hypercall page Xen
    /// filled, shared_info, the console ring. Without
    /// [`crate::entry::xen_pv`] (a
    /// kernel that chose `xen_pv` some other way) every hypercall refuses
    /// and every op falls back, which the fallback log says.
    ///
    /// # Safety
    ///
    /// `choice` must be Xen PV's: the kernel is a PV guest of Xen, once,
    /// on the boot vCPU.
    unsafe fn new(choice: &Choice) -> XenPv {
        let _ = choice;
        let features = Features::read(forced_cpuid);
        let (info_addr, page) = crate::entry::xen_pv_handed().unwrap_or((0, 0));
        static REFUSALS: crate::percpu::Page = crate::percpu::Page::new();
        let page = if page == 0 {
            // SAFETY: setup, once: the static page is this module's and no
            // hypercall runs through it yet.
            let bytes = unsafe { &mut *REFUSALS.0.get() };
            crate::hypercall_page::fill_with_refusals(bytes, 32, -(xen::XEN_ENOSYS as i32));
            fallback::record_setup(0, xen::unsupported());
            REFUSALS.0.get() as usize
        } else {
            page
        };
        // SAFETY: the page Xen filled from the kernel's note (`entry::xen_pv`'s
        // contract), or stubs that refuse every call.
        let hypercalls = unsafe { Hypercalls::new(page as *const u8) };
        crate::xen_pv_traps::set_iret_entry(page as u64 + 32 * u64::from(xen::__HYPERVISOR_iret));
        // SAFETY: `entry::xen_pv`'s contract: start_info mapped and unchanged.
        let info = (info_addr != 0).then(|| unsafe { &*(info_addr as *const start_info) });
        let frames = info.map(|i| (i.mfn_list as usize, i.nr_pages));
        let hardware_domain = info.is_some_and(|i| i.flags & xen::SIF_INITDOMAIN != 0);
        let mapped = info
            .ok_or_else(xen::unsupported)
            .and_then(|i| Self::map_shared_info(&hypercalls, i.shared_info));
        let console = match (info, frames) {
            (Some(i), Some(frames)) if !hardware_domain => {
                Self::pseudo_frame(&hypercalls, frames, i.console_mfn)
                    .and_then(|pfn| platform::get()?.map_gpa(pfn << 12))
                    .filter(|_| i.console_evtchn != 0)
                    .map(|ring| XenConsole {
                        ring,
                        port: i.console_evtchn,
                    })
                    .ok_or_else(invalid)
            }
            _ => Err(xen::unsupported()),
        };
        let pv = XenPv {
            features,
            hypercalls,
            frames,
            shared_info: mapped.is_ok(),
            hardware_domain,
            console: console.ok(),
        };
        let plan = xen::plan(&pv.features);
        if let Err(why) = console {
            // No ring (the hardware domain has none): each write would ask
            // again and log the same answer.
            crate::withdrawn::withdraw_planned(&plan, Op::ConsoleWrite, why);
        }
        if let Err(why) = mapped {
            // Their records live in shared_info.
            for op in [Op::ClockNs, Op::TscHz, Op::Wallclock, Op::FaultAddress] {
                crate::withdrawn::withdraw_planned(&plan, op, why);
            }
        }
        pv
    }

    /// VIRQ_TIMER for this vCPU, for `timer_oneshot`, which fires once
    /// per deadline: so the 10 ms periodic timer Xen gives every PV vCPU
    /// (xen/arch/x86/pv/domain.c) is stopped, as Linux's xen_setup_timer
    /// path does.
    fn init_cpu(&self) {
        let cpu = platform::cpu_index();
        // SAFETY: Xen is the hypervisor; the sub-op takes no argument.
        let stopped = unsafe {
            self.hypercalls
                .hypervisor_vcpu_op(xen::VCPUOP_stop_periodic_timer, cpu as u32, 0)
        };
        if let Err(why) = stopped {
            // Setup step 1 of the fallback log: timer events may come
            // every 10 ms besides the deadlines.
            fallback::record_setup(1, why);
        }
        TIMER_PORT.bind(&self.hypercalls, cpu);
        // Without it, steal_ns and vcpu_is_preempted fall back natively.
        RUNSTATES.register(&self.hypercalls, cpu);
        // Without a port, send_ipi to this vCPU refuses (`unsupported`).
        IPI.bind(&self.hypercalls, cpu);
        if let Err(why) = self.register_vcpu_info(cpu) {
            // Setup step 2: the hot ops' inline forms are not used, and
            // their sites call the routines.
            fallback::record_setup(2, why);
        }
    }

    /// Whether the boot vCPU's vcpu_info is in its CPU area, which the
    /// hot ops' inline forms reach through GS.
    fn cpu_area_in_use(&self) -> bool {
        CPU_AREAS[0].load(SeqCst) != 0
    }

    /// A vCPU's records are its vcpu_info, which Xen moved into the
    /// vCPU's own CPU area (the kernel zeroes the area and never writes
    /// its time record, so a version there is Xen's write), and its
    /// runstate area, where registered.
    fn cpu_record_written(&self, cpu: usize) -> Option<bool> {
        if CPU_AREAS[0].load(SeqCst) == 0 {
            return None;
        }
        let area = CPU_AREAS.get(cpu).map_or(0, |a| a.load(SeqCst));
        if area == 0 {
            return Some(false);
        }
        let info = area as *const vcpu_info;
        // SAFETY: the vCPU's registered vcpu_info, in the kernel's static
        // CPU area for ever; Xen writes it at any time, hence volatile.
        let version = unsafe { core::ptr::addr_of!((*info).time.version).read_volatile() };
        Some(version != 0 && RUNSTATES.written(cpu) != Some(false))
    }

    /// Whether this vCPU's vcpu_info is in its own CPU area.
    fn cpu_area_here(&self) -> bool {
        CPU_AREAS
            .get(platform::cpu_index())
            .is_some_and(|a| a.load(SeqCst) != 0)
    }

    fn upcall_interrupt(&self) -> Upcall {
        let cpu = platform::cpu_index();
        let Ok(vcpu) = self.vcpu_info() else {
            return Upcall::default();
        };
        if !self.shared_info {
            return Upcall::default();
        }
        let info = SHARED_INFO.0.get();
        // The timer's acknowledgement clears the upcall flag before the
        // IPI port is looked at.

        // SAFETY: shared_info is mapped at the static; `vcpu` is this
        // vCPU's vcpu_info, acknowledged on the vCPU itself.
        unsafe {
            let timer = TIMER_PORT.acknowledge(info, vcpu, cpu);
            Upcall {
                timer,
                ipi_vectors: IPI.take(info, cpu),
            }
        }
    }

    /// Until xenconsoled has read the PV console ring, yielding to it.
    fn flush_console(&self) -> bool {
        self.console.is_none_or(|c| c.drain(&self.hypercalls))
    }
}

/// The Xen PV backend's ops.
pub type Ops = xen::Paravirt<XenPv>;
