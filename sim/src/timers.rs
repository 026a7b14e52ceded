//! The hypervisor-side timers of the Xen and Hyper-V personalities (Xen's
//! single-shot vCPU timer, Hyper-V's synthetic timer 0): one deadline per
//! vCPU, and one host thread that waits for the earliest and fires it.
//! What firing means (an event-channel upcall, a direct-mode vector) is
//! the personality's; delivery is an MSI into the in-kernel local APIC.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// One single-shot deadline per vCPU.
pub struct Timers {
    deadlines: Mutex<Vec<Option<Instant>>>,
    changed: Condvar,
}

impl Timers {
    /// Timers for `cpus` vCPUs, none armed.
    pub fn new(cpus: u32) -> Timers {
        Timers {
            deadlines: Mutex::new(vec![None; cpus as usize]),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Instant>>> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Arm `vcpu`'s timer for `at` (replacing any earlier deadline); a
    /// deadline already past fires at once.
    pub fn arm(&self, vcpu: u32, at: Instant) {
        if let Some(slot) = self.lock().get_mut(vcpu as usize) {
            *slot = Some(at);
        }
        self.changed.notify_all();
    }

    /// Disarm `vcpu`'s timer.
    pub fn cancel(&self, vcpu: u32) {
        if let Some(slot) = self.lock().get_mut(vcpu as usize) {
            *slot = None;
        }
        self.changed.notify_all();
    }

    /// The vCPUs whose deadlines are at or before `now`, disarmed; else the
    /// earliest deadline still to come.
    fn take_due(deadlines: &mut [Option<Instant>], now: Instant) -> (Vec<u32>, Option<Instant>) {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (vcpu, slot) in deadlines.iter_mut().enumerate() {
            match *slot {
                Some(at) if at <= now => {
                    *slot = None;
                    due.push(vcpu as u32);
                }
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        (due, next)
    }

    /// Fire deadlines as they come, for ever: `fire(vcpu)` runs outside the
    /// lock, so it may arm timers again.
    pub fn run(&self, fire: impl Fn(u32)) -> ! {
        let mut deadlines = self.lock();
        loop {
            let (due, next) = Self::take_due(&mut deadlines, Instant::now());
            if !due.is_empty() {
                drop(deadlines);
                for vcpu in due {
                    fire(vcpu);
                }
                deadlines = self.lock();
                continue;
            }
            deadlines = match next {
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.changed
                        .wait_timeout(deadlines, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(deadlines)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// Raise `vector` (fixed delivery, edge) on the local APIC whose id is
/// `apic_id`, as an MSI to 0xfee0_0000 would.
pub fn raise(vm: &kvm_ioctls::VmFd, apic_id: u32, vector: u8) -> Result<(), String> {
    let msi = kvm_bindings::kvm_msi {
        address_lo: 0xfee0_0000 | (apic_id & 0xff) << 12,
        address_hi: 0,
        data: u32::from(vector),
        ..Default::default()
    };
    match vm.signal_msi(msi) {
        // 0: the APIC ignored it (masked, disabled); > 0: delivered.
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "KVM_SIGNAL_MSI (vector {vector:#x} to APIC {apic_id}): {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_due_deadlines_are_taken_and_the_next_one_is_named() {
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        let mut d = vec![
            Some(now),
            None,
            Some(later),
            Some(now - Duration::from_millis(1)),
        ];
        let (due, next) = Timers::take_due(&mut d, now);
        assert_eq!(due, vec![0, 3]);
        assert_eq!(next, Some(later));
        assert_eq!(d, vec![None, None, Some(later), None]);
    }

    #[test]
    fn a_timer_fires_once_near_its_deadline_and_cancel_stops_another() {
        let timers = std::sync::Arc::new(Timers::new(2));
        let (tx, rx) = std::sync::mpsc::channel();
        let t = timers.clone();
        std::thread::spawn(move || t.run(move |vcpu| tx.send((vcpu, Instant::now())).unwrap()));
        let armed = Instant::now();
        timers.arm(1, armed + Duration::from_millis(20));
        timers.arm(0, armed + Duration::from_millis(10));
        timers.cancel(0);
        let (vcpu, at) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(vcpu, 1);
        assert!(at >= armed + Duration::from_millis(20));
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}
