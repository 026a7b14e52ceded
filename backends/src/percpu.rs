//! Memory shared with the hypervisor: one record per CPU, written by the
//! hypervisor behind the compiler's back, so read only with volatile reads.

use core::cell::UnsafeCell;

/// CPUs a backend keeps records for: enough for x2APIC machines, whose
/// CPU counts pass 255. A CPU beyond it is refused by `init_cpu`
/// ([`crate::select::BeyondCapacity`]), never given another CPU's record.
/// The records take about 200 bytes per CPU.
pub const MAX_CPUS: usize = 1024;

/// A value the hypervisor may write at any time.
#[repr(transparent)]
pub struct Shared<T>(UnsafeCell<T>);

// SAFETY: the guest reads a Shared only with volatile reads (and writes it
// only before registering it, or with atomics where the ABI says so); the
// hypervisor's writes follow the ABI's protocols (version counters), which
// the readers check.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// A record holding `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Its address, for the hypervisor and for volatile reads.
    pub const fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// A page-aligned array of per-CPU records, so that none crosses a page.
#[repr(C, align(4096))]
pub struct PerCpu<T>(pub [Shared<T>; MAX_CPUS]);

impl<T> PerCpu<T> {
    /// The record of CPU `cpu`. Only CPUs below [`MAX_CPUS`] reach here:
    /// `Selection::init_cpu` refuses the others
    /// (`pvi_backends::select::check_capacity`); the index is clamped all
    /// the same, so that a kernel that ignored the refusal reads a wrong
    /// record rather than out of bounds.
    pub fn of(&self, cpu: usize) -> &Shared<T> {
        &self.0[cpu.min(MAX_CPUS - 1)]
    }
}

/// One page-aligned page of memory for the hypervisor.
#[repr(C, align(4096))]
pub struct Page(pub Shared<[u8; 4096]>);

impl Page {
    /// A zeroed page.
    pub const fn new() -> Self {
        Self(Shared::new([0; 4096]))
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}
