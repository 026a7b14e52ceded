//! Which CPU is running, without a VM exit: each CPU's GS base points at
//! its own block, whose first quadword is its index. (Asking the APIC for
//! its id costs an MSR read, a VM exit under a hypervisor, on every op.)
//! The base is set through the `gs_base_set` op: `wrmsr` natively,
//! set_segment_base on Xen PV.

use crate::firmware::MAX_CPUS;
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use pvi_sdk::cpu_area::CpuArea;

/// One CPU's block: its index in the first line, then the hypervisor's
/// area (`pvi_sdk::cpu_area`) at the GS offset the SDK fixes, where Xen PV
/// keeps this vCPU's vcpu_info for the hot ops' inline forms.
#[repr(C, align(64))]
struct Block {
    index: u64,
    area: CpuArea,
}

const _: () = assert!(core::mem::offset_of!(Block, area) == pvi_sdk::cpu_area::GS_OFFSET);

static BLOCKS: [Block; MAX_CPUS] = {
    let mut blocks = [const {
        Block {
            index: 0,
            area: CpuArea::new(),
        }
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        blocks[i].index = i as u64;
        i += 1;
    }
    blocks
};

/// Whether a GS base was set (on the boot CPU, before any other runs):
/// until then GS-relative reads would read address 0.
static SET: AtomicBool = AtomicBool::new(false);

/// Point this CPU's GS base at block `cpu`.
///
/// # Safety
///
/// `cpu` is the calling CPU's index (below `MAX_CPUS`): [`index`] trusts it.
pub unsafe fn set(cpu: usize) {
    use pvi_sdk::PvOps;
    let block = core::ptr::addr_of!(BLOCKS[cpu]) as u64;
    // SAFETY: the block is a static, canonical and mapped for ever; the
    // caller's contract makes it this CPU's.
    if let Err(why) = unsafe { crate::backend().gs_base_set(block) } {
        panic!("CPU {cpu}: GS base not set: {why:?}");
    }
    SET.store(true, Relaxed);
}

/// The calling CPU's index once a GS base was set, else `None`.
pub fn index_if_set() -> Option<usize> {
    SET.load(Relaxed).then(index)
}

/// The calling CPU's index, as [`set`] recorded it.
pub fn index() -> usize {
    let index: u64;
    // SAFETY: `set` ran on this CPU before anything asks (main and the AP
    // entry call it first), so gs:[0] is this CPU's block's index field.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, readonly, preserves_flags))
    };
    index as usize
}

/// CPU `cpu`'s hypervisor area, for `Platform::cpu_area`.
pub fn area(cpu: usize) -> Option<usize> {
    BLOCKS.get(cpu).map(|block| block.area.address())
}
