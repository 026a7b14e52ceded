//! Xen's time records in shared_info, as the Xen HVM/PVH and PV backends
//! both read them: this vCPU's vcpu_time_info and the wall clock.

use core::sync::atomic::{fence, Ordering::SeqCst};
use pvi_sdk::generated::xen;
use pvi_sdk::types::{pvclock_vcpu_time_info, shared_info, Nanos, PvError};

/// Reads of the wall clock before giving up on one that keeps changing.
const RETRIES: u32 = 1000;

/// vCPU `cpu`'s vcpu_time_info inside the shared_info at `info`: only the
/// first XEN_LEGACY_MAX_VCPUS have one there.
#[cfg_attr(not(feature = "xen"), allow(dead_code))] // Xen PV reads its vcpu_info's
pub(crate) fn time_info(
    info: *const shared_info,
    cpu: usize,
) -> Result<*const pvclock_vcpu_time_info, PvError> {
    if cpu >= xen::XEN_LEGACY_MAX_VCPUS as usize {
        return Err(xen::unsupported());
    }
    // SAFETY: a field address inside the record (no access);
    // vcpu_time_info has pvclock's layout (idl/xen.pvi).
    Ok(unsafe { core::ptr::addr_of!((*info).vcpu_info[cpu].time) }.cast())
}

/// shared_info's wall clock (wc_*, under wc_version) plus `now`, this
/// vCPU's system time; `Err(busy)` while Xen keeps updating it.
///
/// # Safety
///
/// `info` is the mapped shared_info Xen writes.
pub(crate) unsafe fn wallclock(
    info: *const shared_info,
    now: Nanos,
    busy: PvError,
) -> Result<Nanos, PvError> {
    for _ in 0..RETRIES {
        // SAFETY: fields of the mapped shared_info (the caller's
        // contract), read volatile under the wc_version protocol (odd
        // while Xen updates).
        let (v1, sec, nsec, hi, v2) = unsafe {
            let v1 = core::ptr::addr_of!((*info).wc_version).read_volatile();
            fence(SeqCst);
            let sec = core::ptr::addr_of!((*info).wc_sec).read_volatile();
            let nsec = core::ptr::addr_of!((*info).wc_nsec).read_volatile();
            let hi = core::ptr::addr_of!((*info).wc_sec_hi).read_volatile();
            fence(SeqCst);
            (
                v1,
                sec,
                nsec,
                hi,
                core::ptr::addr_of!((*info).wc_version).read_volatile(),
            )
        };
        if v1 == v2 && v1 % 2 == 0 {
            let secs = u64::from(hi) << 32 | u64::from(sec);
            let wall = secs
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(nsec));
            return Ok(Nanos(wall.saturating_add(now.0)));
        }
    }
    Err(busy)
}
