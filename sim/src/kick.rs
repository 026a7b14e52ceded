//! Remote TLB flushes: a hypercall that flushes other vCPUs' TLBs
//! (Hyper-V's HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE, Xen's HVMOP_flush_tlbs)
//! must not return before they are flushed. The caller's thread posts a
//! request to each target and kicks its thread out of KVM_RUN with a
//! signal; each target flushes its own TLB (only a vCPU's own thread may
//! touch it) and acknowledges.
//!
//! The kick sets `immediate_exit` in the target's `kvm_run`, so a kick that
//! lands just before the thread enters KVM_RUN is not lost: KVM_RUN then
//! returns at once.

use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuFd;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::{Duration, Instant};

thread_local! {
    /// This vCPU thread's `kvm_run`, for the signal handler.
    static RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The kick: make a KVM_RUN in progress, or the next one, return.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own kvm_run mapping, set by
        // `Kicks::enter` and valid for the thread's life; KVM reads the
        // byte at its next KVM_RUN.
        unsafe { (*run).immediate_exit = 1 };
    }
}

/// The signal that kicks a vCPU thread.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

/// How long a flush waits for the other vCPUs before giving up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Per vCPU: its thread, and flush requests numbered as made and as done.
pub struct Kicks {
    threads: Mutex<Vec<Option<libc::pthread_t>>>,
    requested: Vec<AtomicU64>,
    done: Vec<AtomicU64>,
}

impl Kicks {
    /// For `cpus` vCPUs; installs the kick's signal handler.
    pub fn new(cpus: u32) -> Result<Kicks, String> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| format!("installing the vCPU kick handler: {e}"))?;
        Ok(Kicks {
            threads: Mutex::new(vec![None; cpus as usize]),
            requested: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
            done: (0..cpus).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Called by vCPU `id`'s thread before its first KVM_RUN.
    pub fn enter(&self, id: u32, vcpu: &mut VcpuFd) {
        let run: *mut kvm_run = vcpu.get_kvm_run();
        RUN.with(|r| r.set(run));
        if let Some(slot) = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(id as usize)
        {
            // SAFETY: pthread_self has no preconditions.
            *slot = Some(unsafe { libc::pthread_self() });
        }
    }

    /// Called by vCPU `id`'s thread after every KVM_RUN: clear the kick
    /// and carry out the flushes asked of it.
    pub fn serve(&self, id: u32, vcpu: &mut VcpuFd) -> Result<(), String> {
        vcpu.set_kvm_immediate_exit(0);
        let (Some(requested), Some(done)) =
            (self.requested.get(id as usize), self.done.get(id as usize))
        else {
            return Ok(());
        };
        let wanted = requested.load(SeqCst);
        if wanted > done.load(SeqCst) {
            flush_own_tlb(vcpu)?;
            done.store(wanted, SeqCst);
        }
        Ok(())
    }

    /// From vCPU `caller`'s thread: flush the TLBs of every vCPU in
    /// `targets` (bit n: vCPU n), the caller's own included, and return
    /// once all are flushed; `Err` names a vCPU that did not answer.
    pub fn flush(&self, caller: u32, vcpu: &mut VcpuFd, targets: u64) -> Result<(), String> {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut waiting = Vec::new();
        for (n, thread) in threads.iter().enumerate() {
            if n >= 64 || targets & 1 << n == 0 || n == caller as usize {
                continue;
            }
            let ticket = self.requested[n].fetch_add(1, SeqCst) + 1;
            if let Some(thread) = thread {
                // SAFETY: a live vCPU thread of this process (they run
                // until the process exits); the signal has a handler.
                unsafe { libc::pthread_kill(*thread, kick_signal()) };
            }
            waiting.push((n, ticket));
        }
        if targets & 1 << caller != 0 {
            flush_own_tlb(vcpu)?;
        }
        let give_up = Instant::now() + FLUSH_TIMEOUT;
        for (n, ticket) in waiting {
            while self.done[n].load(SeqCst) < ticket {
                // Two vCPUs may be flushing each other: serve ours meanwhile.
                self.serve(caller, vcpu)?;
                if Instant::now() > give_up {
                    return Err(format!("vCPU {n} did not flush within {FLUSH_TIMEOUT:?}"));
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        Ok(())
    }
}

/// Flush this vCPU's TLB, global entries included, the way toggling
/// CR4.PGE does: each KVM_SET_SREGS that changes CR4 resets KVM's MMU
/// context, and KVM flushes the TLB when it loads the new root.
fn flush_own_tlb(vcpu: &mut VcpuFd) -> Result<(), String> {
    const CR4_PGE: u64 = 1 << 7;
    let sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    let mut toggled = sregs;
    toggled.cr4 ^= CR4_PGE;
    vcpu.set_sregs(&toggled)
        .and_then(|()| vcpu.set_sregs(&sregs))
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))
}
