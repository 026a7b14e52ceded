//! Xen's vCPU runstate areas, shared by the HVM and PV backends: each
//! vCPU registers a record of its own (VCPUOP_register_runstate_memory_area,
//! a guest virtual address under both), which Xen rewrites whenever the
//! vCPU changes state. Stolen time and preemption are read from it, as
//! Linux's xen_steal_clock and xen_vcpu_stolen do.

use crate::percpu::{PerCpu, Shared, MAX_CPUS};
use core::sync::atomic::{AtomicU8, Ordering::SeqCst};
use pvi_sdk::generated::xen::{self, Hypercalls};
use pvi_sdk::types::{
    vcpu_register_runstate_memory_area, vcpu_runstate_info, ErrorKind, ErrorOrigin, Nanos, PvError,
};

/// The records, shared by the two backends (one of them runs).
pub(crate) static RUNSTATES: Runstates = Runstates::new();

/// Reads of a record before giving up on one that keeps changing.
const RETRIES: u32 = 1000;

/// Every vCPU's runstate record, and whether Xen took its registration.
pub(crate) struct Runstates {
    records: PerCpu<vcpu_runstate_info>,
    registered: [AtomicU8; MAX_CPUS],
}

impl Runstates {
    /// None registered.
    pub(crate) const fn new() -> Self {
        Runstates {
            records: PerCpu([const { Shared::new(vcpu_runstate_info::ZERO) }; MAX_CPUS]),
            registered: [const { AtomicU8::new(0) }; MAX_CPUS],
        }
    }

    /// Register vCPU `cpu`'s record; called on that vCPU. Whether Xen
    /// took it.
    pub(crate) fn register(&self, hypercalls: &Hypercalls, cpu: usize) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        let area = vcpu_register_runstate_memory_area {
            addr: self.records.of(cpu).get() as u64,
        };
        // SAFETY: Xen is the hypervisor here; the area is a static record only Xen writes.
        let done = unsafe {
            hypercalls.hypervisor_vcpu_op(
                xen::VCPUOP_register_runstate_memory_area,
                cpu as u32,
                core::ptr::from_ref(&area) as u64,
            )
        };
        self.registered[cpu].store(u8::from(done == Ok(0)), SeqCst);
        done == Ok(0)
    }

    /// vCPU `cpu`'s record, read consistently: `unsupported` if it was
    /// never registered, busy if Xen kept changing it.
    pub(crate) fn read(&self, cpu: usize) -> Result<vcpu_runstate_info, PvError> {
        if cpu >= MAX_CPUS || self.registered[cpu].load(SeqCst) == 0 {
            return Err(xen::unsupported());
        }
        let record = self.records.of(cpu).get();
        for _ in 0..RETRIES {
            // SAFETY: a registered static record; two equal volatile copies are a consistent one.
            let (a, b) = unsafe { (record.read_volatile(), record.read_volatile()) };
            if a.state_entry_time == b.state_entry_time && a.state == b.state {
                return Ok(a);
            }
        }
        Err(PvError::new(ErrorKind::Busy, ErrorOrigin::Xen(0)))
    }

    /// Time vCPU `cpu` was runnable but not running, or offline (Linux's
    /// definition of stolen time).
    pub(crate) fn stolen(&self, cpu: usize) -> Result<Nanos, PvError> {
        let r = self.read(cpu)?;
        let runnable = r.time[xen::RUNSTATE_runnable as usize].0;
        let offline = r.time[xen::RUNSTATE_offline as usize].0;
        Ok(Nanos(runnable.saturating_add(offline)))
    }

    /// Whether vCPU `cpu` is runnable but not running: preempted.
    pub(crate) fn preempted(&self, cpu: usize) -> Result<bool, PvError> {
        Ok(self.read(cpu)?.state == xen::RUNSTATE_runnable)
    }

    /// Whether Xen wrote vCPU `cpu`'s record (on registration it does,
    /// and its entry time is then non-zero); `None` when not even the
    /// boot vCPU's was registered.
    pub(crate) fn written(&self, cpu: usize) -> Option<bool> {
        if self.registered[0].load(SeqCst) == 0 {
            return None;
        }
        if cpu >= MAX_CPUS || self.registered[cpu].load(SeqCst) == 0 {
            return Some(false);
        }
        let record = self.records.of(cpu).get();
        // SAFETY: a static, aligned record Xen may write at any time: hence the volatile read.
        let entered = unsafe { core::ptr::addr_of!((*record).state_entry_time).read_volatile() };
        Some(entered != 0)
    }
}
