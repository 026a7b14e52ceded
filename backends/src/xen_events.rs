//! Xen's timer event (VIRQ_TIMER), shared by the HVM and PV backends:
//! each vCPU binds it to a port of its own, and the upcall handler
//! acknowledges it; and Xen PV's IPIs, an event channel per vCPU with the
//! vectors beside it.

use crate::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use pvi_sdk::generated::xen::{self, Hypercalls};
use pvi_sdk::types::{
    evtchn_bind_ipi, evtchn_bind_virq, evtchn_send, shared_info, vcpu_info, PvError,
};

/// The ports VIRQ_TIMER is bound to, one per vCPU (0: not bound).
pub(crate) struct TimerPorts([AtomicU32; MAX_CPUS]);

impl TimerPorts {
    /// None bound.
    pub(crate) const fn new() -> Self {
        TimerPorts([const { AtomicU32::new(0) }; MAX_CPUS])
    }

    /// Bind VIRQ_TIMER for vCPU `cpu` (EVTCHNOP_bind_virq) and keep its
    /// port; whether Xen bound it.
    pub(crate) fn bind(&self, hypercalls: &Hypercalls, cpu: usize) -> bool {
        let mut bind = evtchn_bind_virq {
            virq: xen::VIRQ_TIMER,
            vcpu: cpu as u32,
            port: 0,
        };
        // SAFETY: Xen is the hypervisor (a backend of Xen's ABI calls
        // this); it writes the bound port into the struct, which lives
        // until the call returns.
        let bound = unsafe {
            hypercalls.hypervisor_event_channel_op(
                xen::EVTCHNOP_bind_virq,
                core::ptr::from_mut(&mut bind) as u64,
            )
        };
        let ok = bound == Ok(0) && cpu < MAX_CPUS;
        if ok {
            self.0[cpu].store(bind.port, SeqCst);
        }
        ok
    }

    /// Acknowledge vCPU `cpu`'s timer event: clear its upcall flag and
    /// selector in `vcpu` (its vcpu_info, wherever Xen keeps it) and
    /// VIRQ_TIMER's pending bit in `info`, as Linux's upcall handler does;
    /// whether the bit was set. Xen notifies only when a port becomes
    /// pending, so without this the first timer event would also be the
    /// last. Other ports' bits, which may be other vCPUs' timers, are left
    /// alone.
    ///
    /// # Safety
    ///
    /// `info` is the domain's shared_info, mapped; `cpu` is the calling
    /// vCPU and `vcpu` its vcpu_info, mapped.
    pub(crate) unsafe fn acknowledge(
        &self,
        info: *mut shared_info,
        vcpu: *mut vcpu_info,
        cpu: usize,
    ) -> bool {
        let Some(port) = self.0.get(cpu).map(|p| p.load(SeqCst) as usize) else {
            return false;
        };
        // SAFETY: fields of the mapped shared_info and vcpu_info (the
        // caller's contract), which Xen and the guest update with atomic
        // operations (the event-channel ABI); the port was bound by Xen, so
        // it indexes evtchn_pending.
        unsafe {
            let upcall = AtomicU8::from_ptr(core::ptr::addr_of_mut!((*vcpu).evtchn_upcall_pending));
            upcall.store(0, SeqCst);
            let selector = AtomicU64::from_ptr(core::ptr::addr_of_mut!((*vcpu).evtchn_pending_sel));
            selector.fetch_and(!(1 << (port / 64)), SeqCst);
            take_pending(info, port)
        }
    }
}

/// Clear `port`'s bit in shared_info's evtchn_pending; whether it was set.
///
/// # Safety
///
/// `info` is the domain's shared_info, mapped.
unsafe fn take_pending(info: *mut shared_info, port: usize) -> bool {
    if port == 0 || port / 64 >= 64 {
        return false;
    }
    let bit = 1 << (port % 64);
    // SAFETY: a word of the mapped shared_info (the caller's contract),
    // which Xen and the guest update atomically (the event-channel ABI).
    unsafe {
        let bits = AtomicU64::from_ptr(core::ptr::addr_of_mut!((*info).evtchn_pending[port / 64]));
        bits.fetch_and(!bit, SeqCst) & bit != 0
    }
}

/// Each vCPU's IPI port (0: not bound) and the vectors sent to it and not
/// yet taken: Xen PV's `send_ipi`.
#[cfg_attr(not(feature = "xen_pv"), allow(dead_code))]
pub(crate) struct IpiPorts {
    ports: [AtomicU32; MAX_CPUS],
    vectors: [[AtomicU64; 4]; MAX_CPUS],
}

#[cfg_attr(not(feature = "xen_pv"), allow(dead_code))]
impl IpiPorts {
    /// None bound.
    pub(crate) const fn new() -> Self {
        IpiPorts {
            ports: [const { AtomicU32::new(0) }; MAX_CPUS],
            vectors: [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS],
        }
    }

    /// Bind an IPI port for vCPU `cpu` (EVTCHNOP_bind_ipi), the calling
    /// one; whether Xen bound it.
    pub(crate) fn bind(&self, hypercalls: &Hypercalls, cpu: usize) -> bool {
        let mut bind = evtchn_bind_ipi {
            vcpu: cpu as u32,
            port: 0,
        };
        // SAFETY: Xen is the hypervisor; it writes the port into the
        // struct, which lives until the call returns.
        let bound = unsafe {
            hypercalls.hypervisor_event_channel_op(
                xen::EVTCHNOP_bind_ipi,
                core::ptr::from_mut(&mut bind) as u64,
            )
        };
        let ok = bound == Ok(0) && cpu < MAX_CPUS;
        if ok {
            self.ports[cpu].store(bind.port, SeqCst);
        }
        ok
    }

    /// Send `vector` to vCPU `cpu`: the vector into its set, then its port
    /// notified (EVTCHNOP_send), so that the handler that takes the set
    /// after the event sees it.
    pub(crate) fn send(
        &self,
        hypercalls: &Hypercalls,
        cpu: usize,
        vector: u8,
    ) -> Result<(), PvError> {
        let port = self.ports.get(cpu).map_or(0, |p| p.load(SeqCst));
        if port == 0 {
            return Err(xen::unsupported());
        }
        self.vectors[cpu][usize::from(vector / 64)].fetch_or(1 << (vector % 64), SeqCst);
        let send = evtchn_send { port };
        // SAFETY: Xen is the hypervisor; the struct lives until the call
        // returns, and the port is one this domain bound.
        unsafe {
            hypercalls
                .hypervisor_event_channel_op(xen::EVTCHNOP_send, core::ptr::from_ref(&send) as u64)
        }
        .map(|_| ())
    }

    /// Take vCPU `cpu`'s IPIs, from its upcall handler after the upcall
    /// flag was cleared: its port's pending bit first, then the vectors
    /// (one sent meanwhile pends the port again).
    ///
    /// # Safety
    ///
    /// `info` is the domain's shared_info, mapped; `cpu` the calling vCPU.
    pub(crate) unsafe fn take(&self, info: *mut shared_info, cpu: usize) -> [u64; 4] {
        let Some(port) = self.ports.get(cpu).map(|p| p.load(SeqCst) as usize) else {
            return [0; 4];
        };
        // SAFETY: the caller's contract.
        if !unsafe { take_pending(info, port) } {
            return [0; 4];
        }
        self.vectors[cpu].each_ref().map(|v| v.swap(0, SeqCst))
    }
}
