//! What the kernel tells the backends about itself.

use pvi_sdk::types::ApicId;

/// Interrupt vectors the native routines send or program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vectors {
    /// The local timer's vector (`timer_oneshot`).
    pub timer: u8,
    /// The wake-up IPI of `kick_cpu`.
    pub kick: u8,
    /// The remote TLB flush IPI of `flush_tlb`; its handler must call
    /// [`crate::native::flush_ipi_handler`].
    pub flush: u8,
    /// Xen's event-channel upcall (`HVM_PARAM_CALLBACK_IRQ`), which brings
    /// its timer and any other event the backend binds; its handler must
    /// call [`Selection::upcall_interrupt`](crate::select::Selection::upcall_interrupt),
    /// do the timer's work when that says the timer fired, then EOI (which
    /// the real Xen's callback, bypassing the local APIC, does not need,
    /// and a VMM raising it through the APIC does). The same vector as
    /// `timer` makes the upcall share the timer's handler instead.
    pub upcall: u8,
}

/// One region of the machine's E820-style memory map, as a PVH loader's
/// `hvm_memmap_table_entry` or Xen's `XENMEM_memory_map` describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type: 1 is usable RAM.
    pub kind: u32,
}

/// ACPI registers the kernel found in the FADT, for power-off and reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acpi {
    /// PM1a control block port.
    pub pm1a_control: Option<u16>,
    /// The sleep control register's I/O port, on an ACPI hardware-reduced
    /// platform (FADT `HW_REDUCED_ACPI`: no PM1 blocks; VMMs such as
    /// cloud-hypervisor and Firecracker): SLP_TYP in bits 4:2, SLP_EN in
    /// bit 5 (ACPI 6.5 §4.8.3.7).
    pub sleep_control: Option<u16>,
    /// SLP_TYPa of the \_S5 sleep state.
    pub s5_sleep_type: u16,
    /// Reset register (I/O port) and value.
    pub reset: Option<(u16, u8)>,
    /// The CMOS century register, if the FADT names one.
    pub century: Option<u8>,
}

impl Acpi {
    /// SLP_TYPa of `\_S5` from the DSDT's AML: the first element of the
    /// package named `_S5_` (`NameOp "_S5_" PackageOp PkgLength NumElements
    /// element…`, ACPI 6.5 §20.2.5); `None` when the bytes do not have
    /// that shape.
    ///
    /// A byte scan, not the `aml` crate's interpreter, on purpose: that
    /// crate needs an allocator, and pvi's crates, like the example
    /// kernel, run without one. It finds `\_S5` as firmware writes it (a
    /// static package, as QEMU, cloud-hypervisor and Xen's DSDTs do); a
    /// `\_S5` computed by a method it cannot read, and returns `None`. A
    /// kernel that has an allocator and the `aml` crate evaluates `\_S5`
    /// itself and puts the result in the [`Acpi`] its `Platform` returns.
    pub fn s5_sleep_type(aml: &[u8]) -> Option<u16> {
        let at = aml.windows(4).position(|w| w == b"_S5_")?;
        let rest = aml.get(at + 4..)?;
        if *rest.first()? != 0x12 {
            return None; // not a PackageOp
        }
        // PkgLength: bits 7:6 of the lead byte count the bytes that follow.
        let following = usize::from(rest.get(1)? >> 6);
        let element = rest.get(3 + following..)?;
        match *element.first()? {
            0x00 => Some(0),                               // ZeroOp
            0x01 => Some(1),                               // OneOp
            0x0a => element.get(1).map(|&b| u16::from(b)), // BytePrefix
            _ => None,
        }
    }
}

/// The kernel's side of the contract.
pub trait Platform: Sync {
    /// The guest-physical address of kernel memory at `addr`.
    fn gpa(&self, addr: usize) -> u64;
    /// The calling CPU's index, below [`crate::percpu::MAX_CPUS`].
    fn cpu_index(&self) -> usize;
    /// The index of the CPU with this APIC id.
    fn cpu_of_apic(&self, apic: ApicId) -> Option<usize>;
    /// The vectors of the native routines.
    fn vectors(&self) -> Vectors;
    /// ACPI power registers, if known.
    fn acpi(&self) -> Acpi {
        Acpi::default()
    }
    /// Where the xAPIC registers are mapped (virtual address), if the CPU is
    /// not in x2APIC mode.
    fn xapic(&self) -> Option<usize> {
        None
    }
    /// Where the kernel maps the page at guest-physical `gpa`, which the
    /// hypervisor placed (Xen's PV console ring), if it maps it: a
    /// writable, cacheable mapping for the kernel's whole life. `None`
    /// (the default) leaves the backend's steps that need the page unused.
    fn map_gpa(&self, gpa: u64) -> Option<usize> {
        let _ = gpa;
        None
    }
    /// A free page below 1 MiB, 4 KiB-aligned and mapped by
    /// [`map_gpa`](Self::map_gpa), which the native `cpu_start` fills with
    /// its start-up code each time it starts a CPU (STARTUP sends the CPU
    /// there). `None` (the default): no CPU is started natively.
    fn cpu_start_page(&self) -> Option<u64> {
        None
    }
    /// The calling CPU's hypervisor area (a `pvi_sdk::cpu_area::CpuArea`),
    /// which must lie at `pvi_sdk::cpu_area::GS_OFFSET` from the GS base
    /// this CPU set through `gs_base_set`, for the kernel's whole life. A
    /// backend may have the hypervisor keep its per-CPU structure there
    /// and patch the hot ops' inline forms, which reach it through GS.
    /// `None` (the default): no area, and the hot ops are calls.
    fn cpu_area(&self) -> Option<usize> {
        None
    }
}

static PLATFORM: spin::Once<&'static dyn Platform> = spin::Once::new();

/// Tell the backends about the kernel; the first call counts.
pub fn install(platform: &'static dyn Platform) {
    PLATFORM.call_once(|| platform);
}

/// The installed platform.
pub fn get() -> Option<&'static dyn Platform> {
    PLATFORM.get().copied()
}

/// The calling CPU's index, 0 before a platform is installed.
pub fn cpu_index() -> usize {
    get()
        .map(|p| p.cpu_index())
        .unwrap_or(0)
        .min(crate::percpu::MAX_CPUS - 1)
}

/// The guest-physical address of `addr`; identity before a platform is
/// installed.
pub fn gpa(addr: usize) -> u64 {
    get().map(|p| p.gpa(addr)).unwrap_or(addr as u64)
}
