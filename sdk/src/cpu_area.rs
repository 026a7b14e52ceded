//! Each CPU's hypervisor area: a contract between a kernel and the
//! backends. The kernel reserves, in the block its GS base points at on
//! each CPU, [`CPU_AREA_SIZE`] bytes at GS offset [`GS_OFFSET`] (a
//! [`CpuArea`]), and tells the backends where (`pvi_backends::platform`'s
//! `Platform::cpu_area`). A backend may have the hypervisor keep its
//! per-CPU structure there (Xen PV: `vcpu_info`, registered with
//! `VCPUOP_register_vcpu_info`), so that a hot op's inline form reaches it
//! with one GS-relative instruction, on whichever CPU the site runs, as
//! Linux's `xen_vcpu_info` per-CPU variable does.
//!
//! A kernel without such a block offers no area: the backends then serve
//! the hot ops through calls, never through inline forms.

use core::cell::UnsafeCell;

pub use crate::generated::CPU_AREA_SIZE;

/// Where the area starts in each CPU's GS block: after one 64-byte line
/// the kernel keeps for itself (its CPU index, say).
pub const GS_OFFSET: usize = 64;

/// The area itself: a kernel embeds one per CPU at [`GS_OFFSET`] of its GS
/// block. It is the hypervisor's once registered; the kernel never reads
/// or writes it.
#[repr(C, align(64))]
pub struct CpuArea(UnsafeCell<[u8; CPU_AREA_SIZE]>);

// SAFETY: the kernel never touches the bytes; a backend hands them to the
// hypervisor and accesses them with volatile or atomic accesses only.
unsafe impl Sync for CpuArea {}

impl CpuArea {
    /// A zeroed area.
    pub const fn new() -> CpuArea {
        CpuArea(UnsafeCell::new([0; CPU_AREA_SIZE]))
    }

    /// Its address, for `Platform::cpu_area`.
    pub fn address(&self) -> usize {
        self.0.get() as usize
    }
}

impl Default for CpuArea {
    fn default() -> Self {
        Self::new()
    }
}
