//! Xen's timer event (VIRQ_TIMER), shared by the HVM and PV backends:
//! each vCPU binds it to a port of its own, and the upcall handler
//! acknowledges it; and Xen PV's IPIs, an event channel per vCPU with the
//! vectors beside it.

use crate::percpu::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
use pvi_sdk::generated::xen::{self, Hypercalls};
use pvi_sdk::types::{
    evtchn_bind_ipi, evtchn_bind_virq, evtchn_send, multicall_entry, shared_info, vcpu_info,
    ErrorKind, ErrorOrigin, PvError,
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
    // SAFETY: a word of the mapped shared_info (the caller's contract), which Xen and the guest update atomically (the event-channel ABI).
    unsafe {
        let bits = AtomicU64::from_ptr(core::ptr::addr_of_mut!((*info).evtchn_pending[port / 64]));
        bits.fetch_and(!bit, SeqCst) & bit != 0
    }
}

/// The most EVTCHNOP_sends one multicall carries: 8 entries, 512 bytes of
/// stack, where a 64-target IPI would need 4 KiB. More targets take one
/// multicall per 8.
pub(crate) const SENDS_PER_MULTICALL: usize = 8;

/// Whether Xen refused a multicall: ports are then notified one call each.
static MULTICALL_REFUSED: AtomicBool = AtomicBool::new(false);

/// The ports one multicall notifies.
#[derive(Default)]
struct Batch {
    sends: [evtchn_send; SENDS_PER_MULTICALL],
    len: usize,
}

impl Batch {
    /// Notify the batch's ports: one EVTCHNOP_send for one port, a
    /// multicall of them for more; the first refusal.
    fn send(&self, hypercalls: &Hypercalls) -> Result<(), PvError> {
        let sends = &self.sends[..self.len];
        if sends.len() > 1 && !MULTICALL_REFUSED.load(SeqCst) {
            let mut calls = multicall(sends);
            // SAFETY: Xen is the hypervisor; the entries and the structs their second arguments point at live until the call returns, and each port is one this domain bound.
            let made = unsafe {
                hypercalls.hypervisor_multicall(
                    core::ptr::from_mut(&mut calls) as u64,
                    sends.len() as u32,
                )
            };
            match made {
                Ok(_) => return first_failed(&calls[..sends.len()]),
                Err(_) => MULTICALL_REFUSED.store(true, SeqCst),
            }
        }
        let mut first_refusal = None;
        for send in sends {
            // SAFETY: Xen is the hypervisor; the struct lives until the call returns, and the port is one this domain bound.
            let sent = unsafe {
                hypercalls.hypervisor_event_channel_op(
                    xen::EVTCHNOP_send,
                    core::ptr::from_ref(send) as u64,
                )
            };
            if let Err(why) = sent {
                first_refusal.get_or_insert(why);
            }
        }
        first_refusal.map_or(Ok(()), Err)
    }
}

/// The multicall that makes one EVTCHNOP_send per struct of `sends`
/// (at most [`SENDS_PER_MULTICALL`]); the entries past them are unused.
fn multicall(sends: &[evtchn_send]) -> [multicall_entry; SENDS_PER_MULTICALL] {
    core::array::from_fn(|i| {
        let mut args = [0; 6];
        if let Some(send) = sends.get(i) {
            args[0] = u64::from(xen::EVTCHNOP_send);
            args[1] = core::ptr::from_ref(send) as u64;
        }
        multicall_entry {
            op: xen::__HYPERVISOR_event_channel_op,
            result: 0,
            args,
        }
    })
}

/// The first refusal among a made multicall's answers.
fn first_failed(calls: &[multicall_entry]) -> Result<(), PvError> {
    match calls.iter().map(|c| c.result as i64).find(|&r| r < 0) {
        Some(code) => Err(xen::error(code.wrapping_neg())),
        None => Ok(()),
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
        // A batch of one is a plain EVTCHNOP_send.
        self.send_many(hypercalls, core::iter::once(Some(cpu)), vector)
    }

    /// Send `vector` to each vCPU of `cpus` (`None`: a target that names
    /// no vCPU): the vector into each one's set, then their ports notified
    /// together, [`SENDS_PER_MULTICALL`] EVTCHNOP_sends per multicall, so
    /// that one entry into Xen notifies them all (a single target takes a
    /// plain EVTCHNOP_send). Every target is tried; the first refusal is
    /// the answer. Where Xen refuses the multicall itself, each port is
    /// notified by a call of its own, then and from then on.
    pub(crate) fn send_many(
        &self,
        hypercalls: &Hypercalls,
        cpus: impl Iterator<Item = Option<usize>>,
        vector: u8,
    ) -> Result<(), PvError> {
        let mut first_refusal = None;
        let mut batch = Batch::default();
        for cpu in cpus {
            let port = cpu.map_or(0, |cpu| self.ports.get(cpu).map_or(0, |p| p.load(SeqCst)));
            let Some(cpu) = cpu.filter(|_| port != 0) else {
                first_refusal.get_or_insert(match cpu {
                    None => PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Xen(0)),
                    Some(_) => xen::unsupported(),
                });
                continue;
            };
            self.vectors[cpu][usize::from(vector / 64)].fetch_or(1 << (vector % 64), SeqCst);
            batch.sends[batch.len] = evtchn_send { port };
            batch.len += 1;
            if batch.len == SENDS_PER_MULTICALL {
                if let Err(why) = batch.send(hypercalls) {
                    first_refusal.get_or_insert(why);
                }
                batch.len = 0;
            }
        }
        if let Err(why) = batch.send(hypercalls) {
            first_refusal.get_or_insert(why);
        }
        first_refusal.map_or(Ok(()), Err)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multicall_makes_one_evtchnop_send_per_port() {
        let sends = [evtchn_send { port: 5 }, evtchn_send { port: 9 }];
        let calls = multicall(&sends);
        for (call, send) in calls.iter().zip(&sends) {
            assert_eq!(call.op, 32, "__HYPERVISOR_event_channel_op");
            assert_eq!(call.args[0], 4, "EVTCHNOP_send");
            assert_eq!(call.args[1], core::ptr::from_ref(send) as u64);
            assert_eq!(call.args[2..], [0; 4]);
        }
        assert_eq!(core::mem::size_of_val(&calls), 8 * 64);
    }

    #[test]
    fn the_first_failed_entry_is_the_answer() {
        let mut calls = multicall(&[evtchn_send { port: 1 }; 3]);
        assert_eq!(first_failed(&calls), Ok(()));
        // -EINVAL (22) in the second, -ENOENT (2) in the third.
        calls[1].result = (-22i64) as u64;
        calls[2].result = (-2i64) as u64;
        assert_eq!(first_failed(&calls), Err(xen::error(22)));
    }
}
