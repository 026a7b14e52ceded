//! A Xen domU's PV console ring, as the Xen HVM/PVH and PV backends both
//! use it: output into the ring's output half, an event-channel
//! notification to xenconsoled, and a yield while the ring is full.

use pvi_sdk::generated::xen::{self, Hypercalls};
use pvi_sdk::types::{evtchn_send, xencons_interface, ErrorKind, ErrorOrigin, PvError};

/// The ring (its mapped address) and its event channel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XenConsole {
    pub(crate) ring: usize,
    pub(crate) port: u32,
}

impl XenConsole {
    /// Tell xenconsoled the ring has output.
    fn notify(&self, hypercalls: &Hypercalls) {
        let mut send = evtchn_send { port: self.port };
        // SAFETY: Xen is the hypervisor (the caller's backend exists only
        // then); a valid evtchn_send for the console's own port.
        let _ = unsafe {
            hypercalls.hypervisor_event_channel_op(
                xen::EVTCHNOP_send,
                core::ptr::from_mut(&mut send) as u64,
            )
        };
    }

    /// Tell xenconsoled there is output, and let it run.
    fn yield_to_reader(&self, hypercalls: &Hypercalls) {
        self.notify(hypercalls);
        // SAFETY: Xen is the hypervisor; SCHEDOP_yield takes no argument.
        let _ = unsafe { hypercalls.hypervisor_sched_op(xen::SCHEDOP_yield, 0) };
    }

    /// `f` on the ring's output half.
    fn with_ring<T>(&self, f: impl FnOnce(&crate::console_ring::Ring) -> T) -> T {
        // SAFETY: the console page Xen named, which the platform maps for
        // the kernel's life, shared with xenconsoled.
        unsafe { crate::console_ring::with_xencons_output(self.ring as *mut xencons_interface, f) }
    }

    /// Into the ring, then a notification; while the ring is full, yield
    /// to xenconsoled, and fail (Busy) if it stays full.
    pub(crate) fn write(&self, hypercalls: &Hypercalls, data: &[u8]) -> Result<(), PvError> {
        let written = self.with_ring(|ring| {
            crate::console_ring::write(ring, data, crate::console_ring::STALL_WAITS, || {
                self.yield_to_reader(hypercalls)
            })
        });
        self.notify(hypercalls);
        written.map_err(|_| PvError::new(ErrorKind::Busy, ErrorOrigin::Xen(0)))
    }

    /// Until xenconsoled has read the ring (bounded), yielding to it: a
    /// domain destroyed right after writing would otherwise lose its last
    /// lines (seen in CI); whether it did read everything.
    pub(crate) fn drain(&self, hypercalls: &Hypercalls) -> bool {
        self.with_ring(|ring| {
            crate::console_ring::drain(ring, crate::console_ring::STALL_WAITS, || {
                self.yield_to_reader(hypercalls)
            })
        })
    }
}
