//! pvi-sim's side of exit counting (`--exit-mailbox`): KVM's tracepoints
//! on the boot vCPU's thread ([`pvi_sim::exit_counting`]), plus what only
//! the VMM knows: which port accesses were hypercalls, and which MSR
//! accesses KVM handed to it (its tracepoint counts only those it
//! handles).

use crate::personality::{Personality, HYPERCALL_PORT};
use kvm_ioctls::VcpuExit;
use pvi_sdk::generated::vmware::BDOOR_PORT;
use pvi_sim::exit_counting::{self, GuestWords, Tracepoints};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The boot vCPU's port hypercalls and MSR exits to pvi-sim.
static PORT_HYPERCALLS: AtomicU64 = AtomicU64::new(0);
static USER_MSRS: AtomicU64 = AtomicU64::new(0);

/// The boot vCPU's tracepoints, opened by its own thread.
static BOOT_VCPU: OnceLock<Result<Tracepoints, String>> = OnceLock::new();

/// On the boot vCPU's thread, before it first runs: start counting.
pub fn start_on_boot_vcpu() {
    BOOT_VCPU.get_or_init(|| Tracepoints::open(0));
}

/// Count an exit of vCPU `id` that reached pvi-sim, if it is a hypercall
/// through a port or an MSR access.
pub fn saw(id: u32, exit: &VcpuExit, personality: Personality) {
    if id != 0 {
        return;
    }
    let hypercall_port = match personality {
        Personality::Xen | Personality::Hyperv => Some(HYPERCALL_PORT),
        Personality::Vmware => Some(BDOOR_PORT),
        _ => None,
    };
    match exit {
        VcpuExit::IoIn(port, _) | VcpuExit::IoOut(port, _) if Some(*port) == hypercall_port => {
            PORT_HYPERCALLS.fetch_add(1, SeqCst);
        }
        VcpuExit::X86Rdmsr(_) | VcpuExit::X86Wrmsr(_) => {
            USER_MSRS.fetch_add(1, SeqCst);
        }
        _ => {}
    }
}

struct Memory<'a>(&'a GuestMemoryMmap);

impl GuestWords for Memory<'_> {
    fn read(&self, at: u64) -> Option<u64> {
        self.0.read_obj(GuestAddress(at)).ok()
    }
    fn write(&self, at: u64, value: u64) {
        let _ = self.0.write_obj(value, GuestAddress(at));
    }
}

/// Answer the guest's mailbox at `mailbox` until the process ends, once
/// the boot vCPU's counters are open; says why if they cannot be.
pub fn serve(memory: &GuestMemoryMmap, mailbox: u64) {
    let counters = loop {
        match BOOT_VCPU.get() {
            Some(Ok(t)) => break t,
            Some(Err(e)) => {
                eprintln!("pvi-sim: not counting exits: {e}");
                return;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    };
    let reading = || {
        exit_counting::reading(
            counters.read(),
            PORT_HYPERCALLS.load(SeqCst),
            USER_MSRS.load(SeqCst),
        )
    };
    exit_counting::serve(&Memory(memory), mailbox, &reading, &|| false);
}
