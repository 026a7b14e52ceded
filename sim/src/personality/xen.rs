//! The `xen` personality (HVM): the "XenVMMXenVMM" leaves, the hypercall
//! page (filled when the guest writes its address to the MSR that leaf
//! base+2 names; 32-byte stubs `mov eax, N; out 0xe7, al; ret`), and the
//! hypercalls pvi's Xen backend makes: xen_version, console_io (to the
//! serial output), memory_op add_to_physmap for shared_info (its
//! vcpu_time_info kept a valid pvclock, and the wall clock), sched_op
//! yield, block (the vCPU halted in KVM, as `hlt` would) and shutdown, hvm_op set_param for the callback vector,
//! event_channel_op bind_virq for VIRQ_TIMER, and vcpu_op's single-shot
//! timer (its expiry an event-channel upcall on the callback vector) and
//! runstate area (runnable time: the vCPU thread's host run delay), and
//! hvm_op flush_tlbs (returning once every vCPU has flushed,
//! [`crate::kick`]). A domU's console is its PV console ring (hvm_op
//! get_param for its page and port, event_channel_op send to drain it),
//! and console_io is refused to it, as the real Xen 4.17 does; the
//! hardware domain (`--fault hardware-domain`) has no ring and may use
//! console_io. The rest return -XEN_ENOSYS, which the guest reads as "fall
//! back".

use crate::fault::Fault;
use crate::personality::Caller;
use crate::personality::{leaf, HYPERCALL_PORT};
use crate::timers::Timers;
use kvm_bindings::kvm_cpuid_entry2;
use pvi_sdk::generated::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_event_channel_op, __HYPERVISOR_hvm_op,
    __HYPERVISOR_memory_op, __HYPERVISOR_sched_op, __HYPERVISOR_vcpu_op, __HYPERVISOR_xen_version,
    CONSOLEIO_write, EVTCHNOP_bind_virq, EVTCHNOP_send, HVMOP_flush_tlbs, HVMOP_get_param,
    HVMOP_set_param, RUNSTATE_running, SCHEDOP_block, SCHEDOP_shutdown, SCHEDOP_yield,
    SHUTDOWN_crash, SHUTDOWN_poweroff, VCPUOP_register_runstate_memory_area,
    VCPUOP_set_singleshot_timer, VCPUOP_stop_singleshot_timer, VCPU_SSHOTTMR_future, XENFEAT_dom0,
    XENFEAT_hvm_callback_vector, XENFEAT_hvm_safe_pvclock, XENMAPSPACE_shared_info,
    XENMEM_add_to_physmap, XENMEM_memory_map, XENVER_get_features, HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_CALLBACK_TYPE_VECTOR, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, VIRQ_TIMER,
    XEN_CPUID_FIRST_LEAF, XEN_CPUID_HVM_FEATURES, XEN_CPUID_HYPERCALL, XEN_CPUID_SIGNATURE_EBX,
    XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX, XEN_CPUID_TIME, XEN_CPUID_VERSION,
    XEN_EEXIST, XEN_EFAULT, XEN_EINVAL, XEN_ENOENT, XEN_ENOSYS, XEN_EPERM, XEN_ETIME,
    XEN_LEGACY_MAX_VCPUS,
};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory};

/// The MSR that takes the hypercall page's address (leaf base+2's ebx).
pub const HYPERCALL_MSR: u32 = 0x4000_0000;
/// Xen 4.17.
const VERSION: u32 = 4 << 16 | 17;
/// vcpu_info is 64 bytes; its vcpu_time_info is at 32.
const VCPU_INFO_BYTES: u64 = 64;
const VCPU_TIME_OFFSET: u64 = 32;
/// shared_info's wall clock: wc_version, wc_sec, wc_nsec, wc_sec_hi.
const WALL_CLOCK_OFFSET: u64 = 3072;
/// shared_info's evtchn_pending and evtchn_mask bitmaps (64 words each,
/// after the 32 vcpu_info).
const EVTCHN_PENDING_OFFSET: u64 = 2048;
const EVTCHN_MASK_OFFSET: u64 = 2560;
/// xencons_interface: the output ring's offset and size, and its
/// consumer and producer indices.
const CONSOLE_OUTPUT_OFFSET: u64 = 1024;
const CONSOLE_OUTPUT_BYTES: u32 = 2048;
const CONSOLE_OUT_CONS_OFFSET: u64 = 3080;
const CONSOLE_OUT_PROD_OFFSET: u64 = 3084;
/// vcpu_time_info flags: the TSCs are synchronised.
const PVCLOCK_TSC_STABLE_BIT: u8 = 1;
/// Xen's system time when the domain starts: Xen booted before it (the
/// real Xen 4.17 started a PVH dom0 at 0.84 s).
const SYSTEM_TIME_AT_START_NS: u64 = 1_000_000_000;
/// How long before the domain's start its time records are stamped. The
/// real Xen 4.17 stamps them from a TSC read taken before the guest's TSC
/// reads 0, so `tsc_timestamp` is "negative" (2^64 - 147,103,512 was
/// measured for a PVH dom0); a guest that compares TSC values as unsigned
/// numbers freezes its clock. The sim does the same, a quarter second
/// early.
const STAMP_BEFORE_START_NS: u64 = 250_000_000;

/// The Xen leaves for vCPU `vcpu` whose TSC runs at `tsc_khz`.
pub fn cpuid_leaves(tsc_khz: u32, vcpu: u32) -> Vec<kvm_cpuid_entry2> {
    vec![
        leaf(
            XEN_CPUID_FIRST_LEAF,
            XEN_CPUID_HVM_FEATURES,
            XEN_CPUID_SIGNATURE_EBX,
            XEN_CPUID_SIGNATURE_ECX,
            XEN_CPUID_SIGNATURE_EDX,
        ),
        leaf(XEN_CPUID_VERSION, VERSION, 0, 0, 0),
        // One hypercall page, through HYPERCALL_MSR.
        leaf(XEN_CPUID_HYPERCALL, 1, HYPERCALL_MSR, 0, 0),
        // Subleaf 0: no TSC-mode information; ecx: the guest TSC in kHz.
        leaf(XEN_CPUID_TIME, 0, 0, tsc_khz, 0),
        // XEN_HVM_CPUID_VCPU_ID_PRESENT (bit 3), the vCPU id in ebx.
        leaf(XEN_CPUID_HVM_FEATURES, 1 << 3, vcpu, 0, 0),
    ]
}

/// The multiplier and shift of a pvclock for a TSC at `tsc_hz`:
/// ns = ((ticks << shift) * mul) >> 32 (shift < 0: >> -shift), with the
/// largest multiplier that fits for precision.
pub fn pvclock_scale(tsc_hz: u64) -> (u32, i8) {
    let mut shift: i32 = 0;
    let mul = |shift: i32| -> u128 {
        let ns = 1_000_000_000u128 << 32;
        if shift >= 0 {
            ns / (u128::from(tsc_hz.max(1)) << shift)
        } else {
            (ns << -shift) / u128::from(tsc_hz.max(1))
        }
    };
    while mul(shift) > u128::from(u32::MAX) && shift < 31 {
        shift += 1;
    }
    while mul(shift - 1) <= u128::from(u32::MAX) && shift > -31 {
        shift -= 1;
    }
    (mul(shift) as u32, shift as i8)
}

/// What a hypercall leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return this to the guest (rax).
    Return(i64),
    /// Write these bytes to the console, then return 0.
    Console(Vec<u8>),
    /// The guest shut down with this SHUTDOWN_* reason.
    Shutdown(u32),
    /// Flush every vCPU's TLB, then return 0.
    FlushAll,
    /// SCHEDOP_block: halt the vCPU until an interrupt is deliverable,
    /// then return 0.
    Block,
    /// The hardware domain asked to power off: Xen halts every CPU and the
    /// machine stays on (`--fault hardware-domain`).
    HaltMachine,
}

/// The event-channel state: which port each vCPU's VIRQ_TIMER is bound
/// to, and the vector upcalls arrive on.
#[derive(Default)]
struct Events {
    /// HVM_PARAM_CALLBACK_IRQ of type vector; 0 until the guest sets it.
    callback_vector: u8,
    /// Per vCPU: VIRQ_TIMER's port (0 while unbound; port 0 is never
    /// allocated, as in Xen).
    timer_port: Vec<u32>,
    /// The next free port.
    next_port: u32,
}

/// The domain's hypervisor-side state.
pub struct Xen {
    shared_info: Mutex<Option<u64>>,
    events: Mutex<Events>,
    /// Per vCPU: the runstate area's guest-physical address, once registered.
    runstate: Mutex<Vec<Option<u64>>>,
    timers: Timers,
    started: Instant,
    tsc_at_start: u64,
    tsc_hz: u64,
    cpus: u32,
    fault: Option<Fault>,
    /// The PV console ring's page and event-channel port, for a domU.
    console: Option<(u64, u32)>,
    /// The domain's memory map (address, size, E820 type), for
    /// XENMEM_memory_map.
    memory_map: Vec<(u64, u64, u32)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Xen {
    /// A domain of `cpus` vCPUs whose TSCs run at `tsc_khz` and read
    /// `tsc_at_start` now, when it starts.
    pub fn new(tsc_khz: u32, cpus: u32, tsc_at_start: u64, fault: Option<Fault>) -> Xen {
        Xen {
            shared_info: Mutex::new(None),
            events: Mutex::new(Events {
                callback_vector: 0,
                timer_port: vec![0; cpus as usize],
                next_port: 1,
            }),
            runstate: Mutex::new(vec![None; cpus as usize]),
            timers: Timers::new(cpus),
            started: Instant::now(),
            tsc_at_start,
            tsc_hz: u64::from(tsc_khz) * 1000,
            cpus,
            fault,
            console: None,
            memory_map: Vec::new(),
        }
    }

    /// The memory map XENMEM_memory_map answers with: the one the domain
    /// was built with (the start info's, which the hardware domain does not
    /// get).
    pub fn set_memory_map(&mut self, entries: Vec<(u64, u64, u32)>) {
        self.memory_map = entries;
    }

    /// XENMEM_memory_map: as many E820 entries as the guest's buffer holds
    /// (20 bytes each: addr u64, size u64, type u32), and how many.
    fn memory_map(&self, caller: &Caller, arg: u64) -> Outcome {
        // xen_memory_map: nr_entries u32 (IN capacity, OUT count), buffer
        // u64 at 8.
        let Some(m) = caller.read(arg, 16) else {
            return Outcome::Return(-XEN_EFAULT);
        };
        let (capacity, buffer) = (u32_at(&m, 0) as usize, u64_at(&m, 8));
        let count = self.memory_map.len().min(capacity);
        for (i, &(addr, size, kind)) in self.memory_map.iter().take(count).enumerate() {
            let mut entry = [0u8; 20];
            entry[..8].copy_from_slice(&addr.to_le_bytes());
            entry[8..16].copy_from_slice(&size.to_le_bytes());
            entry[16..].copy_from_slice(&kind.to_le_bytes());
            if caller.write(buffer + 20 * i as u64, &entry).is_none() {
                return Outcome::Return(-XEN_EFAULT);
            }
        }
        match caller.write(arg, &(count as u32).to_le_bytes()) {
            Some(()) => Outcome::Return(0),
            None => Outcome::Return(-XEN_EFAULT),
        }
    }

    /// Give a domU a PV console ring in the page at `gpa`, on the next
    /// free event-channel port. The hardware domain gets none (the real
    /// Xen gives its dom0 none: HVM_PARAM_CONSOLE_PFN reads 0).
    pub fn console_ring_at(&mut self, gpa: u64) {
        if self.fault == Some(Fault::HardwareDomain) {
            return;
        }
        let events = self
            .events
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let port = events.next_port;
        events.next_port += 1;
        self.console = Some((gpa, port));
    }

    /// HVMOP_get_param: the console ring's page frame and port (0 where
    /// there is none); other parameters are not kept here.
    fn get_param(&self, caller: &Caller, arg: u64) -> Outcome {
        // xen_hvm_param: domid u16, pad u16, index u32, value u64 (OUT).
        let Some(p) = caller.read(arg, 16) else {
            return Outcome::Return(-XEN_EFAULT);
        };
        let (gpa, port) = self.console.unwrap_or((0, 0));
        let value = match u32_at(&p, 4) {
            HVM_PARAM_CONSOLE_PFN => gpa >> 12,
            HVM_PARAM_CONSOLE_EVTCHN => u64::from(port),
            _ => return Outcome::Return(-XEN_EINVAL),
        };
        match caller.write(arg + 8, &value.to_le_bytes()) {
            Some(()) => Outcome::Return(0),
            None => Outcome::Return(-XEN_EFAULT),
        }
    }

    /// EVTCHNOP_send on the console's port: drain the ring's output as
    /// xenconsoled does (the bytes between out_cons and out_prod, then
    /// out_cons = out_prod).
    fn send(&self, caller: &Caller, arg: u64) -> Outcome {
        // evtchn_send: port u32.
        let Some(s) = caller.read(arg, 4) else {
            return Outcome::Return(-XEN_EFAULT);
        };
        let Some((page, port)) = self.console else {
            return Outcome::Return(-XEN_EINVAL);
        };
        if u32_at(&s, 0) != port {
            return Outcome::Return(-XEN_EINVAL);
        }
        let memory = caller.memory;
        let index = |offset| memory.read_obj::<u32>(GuestAddress(page + offset));
        let (Ok(consumer), Ok(producer)) = (
            index(CONSOLE_OUT_CONS_OFFSET),
            index(CONSOLE_OUT_PROD_OFFSET),
        ) else {
            return Outcome::Return(-XEN_EFAULT);
        };
        // A producer more than a ring ahead is the guest's bug: take one
        // ring's worth, as xenconsoled would not read past it either.
        let count = producer.wrapping_sub(consumer).min(CONSOLE_OUTPUT_BYTES);
        let mut bytes = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = consumer.wrapping_add(i) % CONSOLE_OUTPUT_BYTES;
            match memory.read_obj::<u8>(GuestAddress(page + CONSOLE_OUTPUT_OFFSET + u64::from(at)))
            {
                Ok(b) => bytes.push(b),
                Err(_) => return Outcome::Return(-XEN_EFAULT),
            }
        }
        let done = consumer.wrapping_add(count);
        if memory
            .write_obj(done, GuestAddress(page + CONSOLE_OUT_CONS_OFFSET))
            .is_err()
        {
            return Outcome::Return(-XEN_EFAULT);
        }
        Outcome::Console(bytes)
    }

    /// The vCPUs' single-shot timers, for the thread that fires them.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Xen system time now (what the guest's pvclock reads): ns since Xen
    /// "booted", [`SYSTEM_TIME_AT_START_NS`] before the domain started.
    fn system_time(&self) -> u64 {
        SYSTEM_TIME_AT_START_NS + self.started.elapsed().as_nanos() as u64
    }

    /// The time records' stamp, as the real Xen writes it: a TSC value
    /// [`STAMP_BEFORE_START_NS`] before the domain's start (below the
    /// guest TSC's 0 when that starts near 0, as under KVM: it wraps), and
    /// the system time then.
    fn time_stamp(&self) -> (u64, u64) {
        let ticks_before =
            (u128::from(self.tsc_hz) * u128::from(STAMP_BEFORE_START_NS) / 1_000_000_000) as u64;
        (
            self.tsc_at_start.wrapping_sub(ticks_before),
            SYSTEM_TIME_AT_START_NS - STAMP_BEFORE_START_NS,
        )
    }

    /// Fill the hypercall page at `gpa`.
    pub fn fill_hypercall_page(&self, memory: &GuestMemoryMmap, gpa: u64) -> Result<(), ()> {
        if self.fault == Some(Fault::HypercallPageEmpty) {
            return memory
                .write_slice(&[0u8; 4096], GuestAddress(gpa & !0xfff))
                .map_err(|_| ());
        }
        let mut page = vec![0xcc_u8; 4096];
        for (n, stub) in page.chunks_mut(32).enumerate() {
            let n = (n as u32).to_le_bytes();
            // mov eax, n; out HYPERCALL_PORT, al; ret
            stub[..8].copy_from_slice(&[
                0xb8,
                n[0],
                n[1],
                n[2],
                n[3],
                0xe6,
                HYPERCALL_PORT as u8,
                0xc3,
            ]);
        }
        memory
            .write_slice(&page, GuestAddress(gpa & !0xfff))
            .map_err(|_| ())
    }

    /// Hypercall `number` from `caller`, with arguments rdi, rsi, rdx,
    /// r10, r8.
    // The patterns are Xen's own names (`__HYPERVISOR_*`), kept so they can
    // be grepped for.
    #[allow(non_upper_case_globals)]
    pub fn hypercall(&self, caller: &Caller, number: u64, args: [u64; 5]) -> Outcome {
        let enosys = Outcome::Return(-XEN_ENOSYS);
        if self.fault == Some(Fault::HypercallsUnsupported) {
            return enosys;
        }
        self.update_runstate(caller);
        let efault = Outcome::Return(-XEN_EFAULT);
        match number {
            __HYPERVISOR_xen_version if args[0] == u64::from(XENVER_get_features) => {
                // xen_feature_info: submap_idx u32 IN, submap u32 OUT.
                let Some(info) = caller.read(args[1], 8) else {
                    return efault;
                };
                let mut submap = 0u32;
                if u32_at(&info, 0) == 0 {
                    submap = 1 << XENFEAT_hvm_callback_vector | 1 << XENFEAT_hvm_safe_pvclock;
                    if self.fault == Some(Fault::HardwareDomain) {
                        submap |= 1 << XENFEAT_dom0;
                    }
                }
                match caller.write(args[1] + 4, &submap.to_le_bytes()) {
                    Some(()) => Outcome::Return(0),
                    None => efault,
                }
            }
            __HYPERVISOR_xen_version => Outcome::Return(i64::from(VERSION)),
            // A release Xen writes only its hardware domain's text to its
            // console: a domU's write is refused (measured on Xen 4.17).
            __HYPERVISOR_console_io
                if args[0] == u64::from(CONSOLEIO_write)
                    && self.fault != Some(Fault::HardwareDomain) =>
            {
                Outcome::Return(-XEN_EPERM)
            }
            __HYPERVISOR_console_io if args[0] == u64::from(CONSOLEIO_write) => {
                match caller.read(args[2], (args[1] as usize).min(4096)) {
                    Some(bytes) => Outcome::Console(bytes),
                    None => efault,
                }
            }
            __HYPERVISOR_memory_op if args[0] == u64::from(XENMEM_add_to_physmap) => {
                // xen_add_to_physmap: domid u16, size u16, space u32, idx
                // u64, gpfn u64.
                let Some(arg) = caller.read(args[1], 24) else {
                    return efault;
                };
                let space = u32_at(&arg, 4);
                let gpfn = u64_at(&arg, 16);
                if space != XENMAPSPACE_shared_info {
                    return enosys;
                }
                match self.map_shared_info(caller.memory, gpfn << 12) {
                    Ok(()) => Outcome::Return(0),
                    Err(()) => efault,
                }
            }
            __HYPERVISOR_memory_op if args[0] == u64::from(XENMEM_memory_map) => {
                self.memory_map(caller, args[1])
            }
            __HYPERVISOR_sched_op if args[0] == u64::from(SCHEDOP_yield) => Outcome::Return(0),
            __HYPERVISOR_sched_op if args[0] == u64::from(SCHEDOP_block) => Outcome::Block,
            __HYPERVISOR_sched_op if args[0] == u64::from(SCHEDOP_shutdown) => {
                match caller.read(args[1], 4) {
                    Some(r)
                        if self.fault == Some(Fault::HardwareDomain)
                            && u32_at(&r, 0) == SHUTDOWN_poweroff =>
                    {
                        Outcome::HaltMachine
                    }
                    Some(r) => Outcome::Shutdown(u32_at(&r, 0)),
                    None => efault,
                }
            }
            __HYPERVISOR_hvm_op if args[0] == u64::from(HVMOP_flush_tlbs) => {
                // The argument must be NULL (Xen: -EINVAL otherwise).
                if args[1] == 0 {
                    Outcome::FlushAll
                } else {
                    Outcome::Return(-XEN_EINVAL)
                }
            }
            __HYPERVISOR_hvm_op if args[0] == u64::from(HVMOP_set_param) => {
                self.set_param(caller, args[1])
            }
            __HYPERVISOR_hvm_op if args[0] == u64::from(HVMOP_get_param) => {
                self.get_param(caller, args[1])
            }
            __HYPERVISOR_event_channel_op if args[0] == u64::from(EVTCHNOP_send) => {
                self.send(caller, args[1])
            }
            __HYPERVISOR_event_channel_op if args[0] == u64::from(EVTCHNOP_bind_virq) => {
                self.bind_virq(caller, args[1])
            }
            __HYPERVISOR_vcpu_op => self.vcpu_op(caller, args[0] as u32, args[1], args[2]),
            _ => enosys,
        }
    }

    /// HVMOP_set_param: only HVM_PARAM_CALLBACK_IRQ of type vector.
    fn set_param(&self, caller: &Caller, arg: u64) -> Outcome {
        // xen_hvm_param: domid u16, pad u16, index u32, value u64.
        let Some(p) = caller.read(arg, 16) else {
            return Outcome::Return(-XEN_EFAULT);
        };
        let (index, value) = (u32_at(&p, 4), u64_at(&p, 8));
        if index != HVM_PARAM_CALLBACK_IRQ {
            return Outcome::Return(-XEN_ENOSYS);
        }
        if (value >> 56) as u8 != HVM_PARAM_CALLBACK_TYPE_VECTOR || value & 0xff < 0x10 {
            return Outcome::Return(-XEN_EINVAL);
        }
        lock(&self.events).callback_vector = value as u8;
        Outcome::Return(0)
    }

    /// EVTCHNOP_bind_virq: only VIRQ_TIMER, once per vCPU; the port is
    /// written back into the argument.
    fn bind_virq(&self, caller: &Caller, arg: u64) -> Outcome {
        // evtchn_bind_virq: virq u32, vcpu u32, port u32 (OUT).
        let Some(b) = caller.read(arg, 12) else {
            return Outcome::Return(-XEN_EFAULT);
        };
        let (virq, vcpu) = (u32_at(&b, 0), u32_at(&b, 4));
        if virq != VIRQ_TIMER {
            return Outcome::Return(-XEN_ENOSYS);
        }
        let mut events = lock(&self.events);
        let port = match events.timer_port.get(vcpu as usize) {
            None => return Outcome::Return(-XEN_ENOENT),
            Some(&p) if p != 0 => return Outcome::Return(-XEN_EEXIST),
            Some(_) => events.next_port,
        };
        if caller.write(arg + 8, &port.to_le_bytes()).is_none() {
            return Outcome::Return(-XEN_EFAULT);
        }
        events.timer_port[vcpu as usize] = port;
        events.next_port += 1;
        Outcome::Return(0)
    }

    /// vcpu_op: the single-shot timer and the runstate area, for the
    /// calling vCPU only (as Xen requires of both on HVM).
    #[allow(non_upper_case_globals)]
    fn vcpu_op(&self, caller: &Caller, cmd: u32, vcpu: u64, arg: u64) -> Outcome {
        if vcpu != u64::from(caller.vcpu) {
            return Outcome::Return(-XEN_EINVAL);
        }
        match cmd {
            VCPUOP_set_singleshot_timer => {
                // vcpu_set_singleshot_timer: timeout_abs_ns u64, flags u32.
                let Some(t) = caller.read(arg, 12) else {
                    return Outcome::Return(-XEN_EFAULT);
                };
                let (timeout, flags) = (u64_at(&t, 0), u32_at(&t, 8));
                if flags & VCPU_SSHOTTMR_future != 0 && timeout < self.system_time() {
                    return Outcome::Return(-XEN_ETIME);
                }
                let at = self.started
                    + std::time::Duration::from_nanos(
                        timeout.saturating_sub(SYSTEM_TIME_AT_START_NS),
                    );
                self.timers.arm(caller.vcpu, at);
                Outcome::Return(0)
            }
            VCPUOP_stop_singleshot_timer => {
                self.timers.cancel(caller.vcpu);
                Outcome::Return(0)
            }
            VCPUOP_register_runstate_memory_area => {
                // The argument holds the area's linear address.
                let Some(a) = caller.read(arg, 8) else {
                    return Outcome::Return(-XEN_EFAULT);
                };
                let Some(gpa) = (caller.translate)(u64_at(&a, 0)) else {
                    return Outcome::Return(-XEN_EFAULT);
                };
                if let Some(slot) = lock(&self.runstate).get_mut(caller.vcpu as usize) {
                    *slot = Some(gpa);
                }
                self.update_runstate(caller);
                Outcome::Return(0)
            }
            _ => Outcome::Return(-XEN_ENOSYS),
        }
    }

    /// Rewrite the caller's runstate area: running since now, and the time
    /// it has spent runnable, which is the host scheduler's run delay for
    /// this vCPU thread (the time it waited for a CPU, as KVM's steal time
    /// counts it); the rest of its life it has been running.
    fn update_runstate(&self, caller: &Caller) {
        let Some(Some(gpa)) = lock(&self.runstate).get(caller.vcpu as usize).copied() else {
            return;
        };
        let now = self.system_time();
        let runnable = run_delay_ns().min(now);
        let mut record = [0u8; 48];
        record[0..4].copy_from_slice(&RUNSTATE_running.to_le_bytes());
        record[8..16].copy_from_slice(&now.to_le_bytes());
        record[16..24].copy_from_slice(&(now - runnable).to_le_bytes());
        record[24..32].copy_from_slice(&runnable.to_le_bytes());
        let _ = caller.memory.write_slice(&record, GuestAddress(gpa));
    }

    /// `vcpu`'s timer expired: make VIRQ_TIMER's port pending and, as Xen's
    /// 2-level event channels do, notify the vCPU only on the edges (port
    /// newly pending, unmasked, its selector bit and upcall flag newly set)
    /// with the callback vector. A guest that never clears its pending
    /// bits therefore gets one upcall and no more.
    pub fn fire(&self, vcpu: u32, memory: &GuestMemoryMmap, vm: &kvm_ioctls::VmFd) {
        if self.fault == Some(Fault::TimerNeverFires) {
            return;
        }
        let Some(info) = *lock(&self.shared_info) else {
            return;
        };
        let (port, vector) = {
            let events = lock(&self.events);
            let port = events.timer_port.get(vcpu as usize).copied().unwrap_or(0);
            (port, events.callback_vector)
        };
        if port == 0 || vector == 0 || vcpu >= XEN_LEGACY_MAX_VCPUS {
            return;
        }
        let word = u64::from(port / 64) * 8;
        let bit = 1u64 << (port % 64);
        let selector_bit = 1u64 << (port / 64);
        let vcpu_info = info + u64::from(vcpu) * VCPU_INFO_BYTES;
        // An atomic operation on the guest's u64 at `gpa` (None: unmapped).
        let on = |gpa: u64, f: &dyn Fn(&AtomicU64) -> u64| -> Option<u64> {
            let slice = memory.get_slice(GuestAddress(gpa), 8).ok()?;
            slice.get_atomic_ref::<AtomicU64>(0).ok().map(f)
        };
        let newly_pending = on(info + EVTCHN_PENDING_OFFSET + word, &|a| {
            a.fetch_or(bit, SeqCst)
        })
        .is_some_and(|old| old & bit == 0);
        let masked =
            on(info + EVTCHN_MASK_OFFSET + word, &|a| a.load(SeqCst)).is_none_or(|m| m & bit != 0);
        if !newly_pending || masked {
            return;
        }
        // vcpu_info.evtchn_pending_sel.
        let newly_selected = on(vcpu_info + 8, &|a| a.fetch_or(selector_bit, SeqCst))
            .is_some_and(|old| old & selector_bit == 0);
        if !newly_selected {
            return;
        }
        // vcpu_info: evtchn_upcall_pending (byte 0), evtchn_upcall_mask (1).
        let flag = |offset: u64, f: &dyn Fn(&AtomicU8) -> u8| -> Option<u8> {
            let slice = memory.get_slice(GuestAddress(vcpu_info + offset), 1).ok()?;
            slice.get_atomic_ref::<AtomicU8>(0).ok().map(f)
        };
        if flag(0, &|a| a.swap(1, SeqCst)) != Some(0) {
            return;
        }
        if flag(1, &|a| a.load(SeqCst)) != Some(0) {
            return;
        }
        if let Err(e) = crate::timers::raise(vm, vcpu, vector) {
            eprintln!("pvi-sim: VIRQ_TIMER upcall to vCPU {vcpu}: {e}");
        }
    }

    /// Put shared_info at `gpa`: each vCPU's time record ([`Xen::time_stamp`])
    /// and the wall clock at system time 0.
    fn map_shared_info(&self, memory: &GuestMemoryMmap, gpa: u64) -> Result<(), ()> {
        let page = self.shared_info_page();
        memory
            .write_slice(&page, GuestAddress(gpa))
            .map_err(|_| ())?;
        *lock(&self.shared_info) = Some(gpa);
        Ok(())
    }

    /// shared_info's contents when it is mapped.
    fn shared_info_page(&self) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        let (mul, shift) = pvclock_scale(self.tsc_hz);
        let (stamp_tsc, stamp_time) = self.time_stamp();
        for vcpu in 0..u64::from(self.cpus.min(XEN_LEGACY_MAX_VCPUS)) {
            let t = (vcpu * VCPU_INFO_BYTES + VCPU_TIME_OFFSET) as usize;
            // Version 2 (even: stable; odd under the fault: an update that
            // never ends), stamped as the real Xen does.
            let version: u32 = if self.fault == Some(Fault::PvclockStuckOdd) {
                1
            } else {
                2
            };
            page[t..t + 4].copy_from_slice(&version.to_le_bytes());
            page[t + 8..t + 16].copy_from_slice(&stamp_tsc.to_le_bytes());
            page[t + 16..t + 24].copy_from_slice(&stamp_time.to_le_bytes());
            page[t + 24..t + 28].copy_from_slice(&mul.to_le_bytes());
            page[t + 28] = shift as u8;
            page[t + 29] = PVCLOCK_TSC_STABLE_BIT;
        }
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(std::time::Duration::from_nanos(self.system_time()));
        let w = WALL_CLOCK_OFFSET as usize;
        page[w..w + 4].copy_from_slice(&2u32.to_le_bytes());
        page[w + 4..w + 8].copy_from_slice(&(boot.as_secs() as u32).to_le_bytes());
        page[w + 8..w + 12].copy_from_slice(&boot.subsec_nanos().to_le_bytes());
        page[w + 12..w + 16].copy_from_slice(&((boot.as_secs() >> 32) as u32).to_le_bytes());
        page
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// How long the calling thread has waited on a host run queue (ns), from
/// /proc/thread-self/schedstat's second field; 0 where unavailable.
fn run_delay_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The exit status for a SHUTDOWN_* reason: a crash is a panic (1), the
/// rest a clean stop (0).
pub fn shutdown_status(reason: u32) -> u8 {
    u8::from(reason == SHUTDOWN_crash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvi_sdk::time::pvclock::scale_delta;

    #[test]
    fn the_pvclock_scale_turns_a_second_of_ticks_into_a_second() {
        for hz in [
            1_000_000u64,
            999_999_999,
            1_000_000_000,
            2_596_122_000,
            5_000_000_000,
        ] {
            let (mul, shift) = pvclock_scale(hz);
            let ns = scale_delta(hz, mul, shift);
            assert!(
                ns.abs_diff(1_000_000_000) <= 2,
                "{hz} Hz: {ns} ns ({mul}, {shift})"
            );
            assert!(mul >= 1 << 31, "{hz} Hz: mul {mul} loses precision");
        }
    }

    /// 1 MiB of guest memory, identity-mapped.
    fn machine() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn identity(gva: u64) -> Option<u64> {
        (gva < 1 << 20).then_some(gva)
    }

    fn caller(memory: &GuestMemoryMmap, vcpu: u32) -> Caller<'_> {
        Caller {
            vcpu,
            memory,
            translate: &identity,
        }
    }

    /// The real Xen's stamp precedes the guest TSC's 0; the SDK's reader
    /// must still read the sim's own system time from it.
    #[test]
    fn time_records_are_stamped_before_tsc_zero_as_the_real_xen_does() {
        use pvi_sdk::time::pvclock::{system_time, Snapshot};
        let hz = 2_445_432_000;
        let xen = Xen::new((hz / 1000) as u32, 1, 1_000, None);
        let page = xen.shared_info_page();
        let t = VCPU_TIME_OFFSET as usize;
        let u64_at = |at: usize| u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
        let snapshot = Snapshot {
            version: u32_at(&page, t),
            tsc_timestamp: u64_at(t + 8),
            system_time: u64_at(t + 16),
            tsc_to_system_mul: u32_at(&page, t + 24),
            tsc_shift: page[t + 28] as i8,
            flags: page[t + 29],
        };
        assert!(snapshot.tsc_timestamp > 1 << 63, "the stamp wraps below 0");
        // One second of guest TSC after the start reads one second past the
        // system time at the start.
        let read = system_time(&snapshot, 1_000 + hz).0;
        assert!(
            read.abs_diff(SYSTEM_TIME_AT_START_NS + 1_000_000_000) < 1_000,
            "{read}"
        );
    }

    /// As the real Xen 4.17 answers its hardware domain: XENFEAT_dom0 set,
    /// and a power-off request halts the machine instead of ending it.
    #[test]
    fn the_hardware_domain_sees_xenfeat_dom0_and_its_poweroff_halts() {
        let memory = machine();
        let caller = caller(&memory, 0);
        let features = |xen: &Xen| {
            memory.write_slice(&[0u8; 8], GuestAddress(0x1000)).unwrap();
            let args = [u64::from(XENVER_get_features), 0x1000, 0, 0, 0];
            assert_eq!(
                xen.hypercall(&caller, __HYPERVISOR_xen_version, args),
                Outcome::Return(0)
            );
            let mut out = [0u8; 4];
            memory.read_slice(&mut out, GuestAddress(0x1004)).unwrap();
            u32::from_le_bytes(out)
        };
        let domu = Xen::new(1_000_000, 1, 0, None);
        let dom0 = Xen::new(1_000_000, 1, 0, Some(Fault::HardwareDomain));
        assert_eq!(features(&domu) & 1 << XENFEAT_dom0, 0);
        assert_ne!(features(&dom0) & 1 << XENFEAT_dom0, 0);
        memory.write_slice(&[0u8; 4], GuestAddress(0x2000)).unwrap();
        let poweroff = [u64::from(SCHEDOP_shutdown), 0x2000, 0, 0, 0];
        assert_eq!(
            domu.hypercall(&caller, __HYPERVISOR_sched_op, poweroff),
            Outcome::Shutdown(SHUTDOWN_poweroff)
        );
        assert_eq!(
            dom0.hypercall(&caller, __HYPERVISOR_sched_op, poweroff),
            Outcome::HaltMachine
        );
    }

    /// What the real Xen 4.17 showed a PVH domU: `CONSOLEIO_write` refused,
    /// the PV console ring the way to be read; and the hardware domain the
    /// other way round.
    #[test]
    fn a_domu_writes_through_its_console_ring_and_only_the_hardware_domain_through_console_io() {
        let memory = machine();
        let caller = caller(&memory, 0);
        let mut domu = Xen::new(1_000_000, 1, 0, None);
        domu.console_ring_at(0x8000);
        let mut dom0 = Xen::new(1_000_000, 1, 0, Some(Fault::HardwareDomain));
        dom0.console_ring_at(0x8000);
        memory.write_slice(b"hi", GuestAddress(0x3000)).unwrap();
        let write = [u64::from(CONSOLEIO_write), 2, 0x3000, 0, 0];
        assert_eq!(
            domu.hypercall(&caller, __HYPERVISOR_console_io, write),
            Outcome::Return(-XEN_EPERM)
        );
        assert_eq!(
            dom0.hypercall(&caller, __HYPERVISOR_console_io, write),
            Outcome::Console(b"hi".to_vec())
        );
        let param = |xen: &Xen, index: u32| {
            let mut arg = [0u8; 16];
            arg[4..8].copy_from_slice(&index.to_le_bytes());
            memory.write_slice(&arg, GuestAddress(0x1000)).unwrap();
            let args = [u64::from(HVMOP_get_param), 0x1000, 0, 0, 0];
            assert_eq!(
                xen.hypercall(&caller, __HYPERVISOR_hvm_op, args),
                Outcome::Return(0)
            );
            memory.read_obj::<u64>(GuestAddress(0x1008)).unwrap()
        };
        assert_eq!(param(&dom0, HVM_PARAM_CONSOLE_PFN), 0, "no ring for dom0");
        assert_eq!(param(&domu, HVM_PARAM_CONSOLE_PFN), 8);
        let port = param(&domu, HVM_PARAM_CONSOLE_EVTCHN) as u32;
        assert_ne!(port, 0);
        // The guest's side of the protocol, wrapping past the ring's end.
        let ring = 0x8000u64;
        let start = CONSOLE_OUTPUT_BYTES - 1;
        memory
            .write_obj(start, GuestAddress(ring + CONSOLE_OUT_CONS_OFFSET))
            .unwrap();
        memory
            .write_obj(
                b'o',
                GuestAddress(ring + CONSOLE_OUTPUT_OFFSET + u64::from(start)),
            )
            .unwrap();
        memory
            .write_obj(b'k', GuestAddress(ring + CONSOLE_OUTPUT_OFFSET))
            .unwrap();
        memory
            .write_obj(start + 2, GuestAddress(ring + CONSOLE_OUT_PROD_OFFSET))
            .unwrap();
        memory.write_obj(port, GuestAddress(0x2000)).unwrap();
        let send = [u64::from(EVTCHNOP_send), 0x2000, 0, 0, 0];
        assert_eq!(
            domu.hypercall(&caller, __HYPERVISOR_event_channel_op, send),
            Outcome::Console(b"ok".to_vec())
        );
        let consumed: u32 = memory
            .read_obj(GuestAddress(ring + CONSOLE_OUT_CONS_OFFSET))
            .unwrap();
        assert_eq!(consumed, start + 2);
        memory.write_obj(port + 1, GuestAddress(0x2000)).unwrap();
        assert_eq!(
            domu.hypercall(&caller, __HYPERVISOR_event_channel_op, send),
            Outcome::Return(-XEN_EINVAL)
        );
    }

    /// The real Xen's PVH dom0 gets a start info with no memory map and
    /// asks for it.
    #[test]
    fn the_memory_map_is_answered_up_to_the_buffers_capacity() {
        let memory = machine();
        let caller = caller(&memory, 0);
        let mut xen = Xen::new(1_000_000, 1, 0, Some(Fault::HardwareDomain));
        xen.set_memory_map(vec![(0, 0x9_f000, 1), (0x10_0000, 0x100_0000, 1)]);
        let ask = |capacity: u32| {
            let mut arg = [0u8; 16];
            arg[..4].copy_from_slice(&capacity.to_le_bytes());
            arg[8..].copy_from_slice(&0x2000u64.to_le_bytes());
            memory.write_slice(&arg, GuestAddress(0x1000)).unwrap();
            let args = [u64::from(XENMEM_memory_map), 0x1000, 0, 0, 0];
            assert_eq!(
                xen.hypercall(&caller, __HYPERVISOR_memory_op, args),
                Outcome::Return(0)
            );
            memory.read_obj::<u32>(GuestAddress(0x1000)).unwrap()
        };
        assert_eq!(ask(1), 1);
        assert_eq!(ask(8), 2);
        let second: [u8; 20] = memory.read_obj(GuestAddress(0x2000 + 20)).unwrap();
        assert_eq!(
            u64::from_le_bytes(second[..8].try_into().unwrap()),
            0x10_0000
        );
        assert_eq!(u32::from_le_bytes(second[16..].try_into().unwrap()), 1);
    }

    #[test]
    fn unknown_hypercalls_are_enosys() {
        let xen = Xen::new(1_000_000, 1, 0, None);
        let memory = machine();
        let caller = caller(&memory, 0);
        assert_eq!(
            xen.hypercall(&caller, 99, [0; 5]),
            Outcome::Return(-XEN_ENOSYS)
        );
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_xen_version, [0; 5]),
            Outcome::Return(i64::from(VERSION))
        );
        let sched = |cmd: u32| [u64::from(cmd), 0, 0, 0, 0];
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_sched_op, sched(SCHEDOP_block)),
            Outcome::Block
        );
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_hvm_op, sched(HVMOP_flush_tlbs)),
            Outcome::FlushAll
        );
    }

    #[test]
    fn bind_virq_writes_the_port_back_and_refuses_a_second_bind() {
        let xen = Xen::new(1_000_000, 2, 0, None);
        let memory = machine();
        let caller = caller(&memory, 1);
        let arg = 0x1000;
        memory
            .write_slice(
                &[0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
                GuestAddress(arg),
            )
            .unwrap();
        let bind = [u64::from(EVTCHNOP_bind_virq), arg, 0, 0, 0];
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_event_channel_op, bind),
            Outcome::Return(0)
        );
        let port: u32 = memory.read_obj(GuestAddress(arg + 8)).unwrap();
        assert_eq!(port, 1);
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_event_channel_op, bind),
            Outcome::Return(-XEN_EEXIST)
        );
    }

    #[test]
    fn the_singleshot_timer_is_only_for_the_calling_vcpu_and_refuses_the_past_when_asked() {
        let xen = Xen::new(1_000_000, 2, 0, None);
        let memory = machine();
        let caller = caller(&memory, 0);
        let arg = 0x2000;
        memory.write_obj(1u64, GuestAddress(arg)).unwrap();
        memory
            .write_obj(VCPU_SSHOTTMR_future, GuestAddress(arg + 8))
            .unwrap();
        let set = |vcpu: u64| [u64::from(VCPUOP_set_singleshot_timer), vcpu, arg, 0, 0];
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_vcpu_op, set(1)),
            Outcome::Return(-XEN_EINVAL)
        );
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_vcpu_op, set(0)),
            Outcome::Return(-XEN_ETIME)
        );
        memory.write_obj(0u32, GuestAddress(arg + 8)).unwrap();
        assert_eq!(
            xen.hypercall(&caller, __HYPERVISOR_vcpu_op, set(0)),
            Outcome::Return(0)
        );
    }
}
