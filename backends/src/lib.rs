//! The pvi backends and the run-time choice among them.
//!
//! - [`native`]: bare metal. Its [`BareMetal`](native::BareMetal) routines
//!   end every fallback chain.
//! - one module per hypervisor (behind a cargo feature of the same name):
//!   each implements the generated `Steps` of its ABI, the mechanisms the
//!   IDL's mappings need; the fallback chains themselves are generated
//!   (`pvi_sdk::generated::<hv>::Paravirt`).
//! - [`select`]: detection, `pvi.backend=`, per-CPU setup, the report.
//! - [`direct`]: the routines patched call sites jump to.
//!
//! The kernel provides a [`Platform`](platform::Platform): where memory is
//! physically, which CPU is running, which vectors the native routines use.
//!
//! # Using pvi from your kernel
//!
//! Depend on both crates (`no_std`; build for `x86_64-unknown-none`), with
//! the backends you want (all four by default):
//!
//! ```toml
//! [dependencies]
//! pvi-sdk = "0.1"
//! pvi-backends = { version = "0.1", default-features = false, features = ["kvm", "xen"] }
//! ```
//!
//! Then, on the boot CPU, in this order: install the platform, detect,
//! select, and set up this CPU's records; every op is then a method of
//! the selected backend, served by the first step of its chain the
//! hypervisor offers and natively where none does.
//!
//! ```no_run
//! use pvi_backends::platform::{Platform, Vectors};
//! use pvi_backends::select::{select, Selection};
//! use pvi_sdk::detect::detect;
//! use pvi_sdk::types::ApicId;
//! use pvi_sdk::PvOps;
//!
//! /// What the backends need to know about this kernel.
//! struct Kernel;
//!
//! impl Platform for Kernel {
//!     // Identity-mapped here. A higher-half kernel returns the physical
//!     // address: every address handed to a hypervisor goes through this.
//!     fn gpa(&self, addr: usize) -> u64 {
//!         addr as u64
//!     }
//!     // One CPU in this sketch; an SMP kernel reads its per-CPU index.
//!     fn cpu_index(&self) -> usize {
//!         0
//!     }
//!     fn cpu_of_apic(&self, apic: ApicId) -> Option<usize> {
//!         (apic.0 == 0).then_some(0)
//!     }
//!     // The vectors the native routines program and send, and Xen's
//!     // upcall. Their handlers: the timer's calls
//!     // `Selection::timer_interrupt` then ends the interrupt (`eoi`); the
//!     // flush IPI's calls `pvi_backends::native::flush_ipi_handler`; the
//!     // kick only wakes; the upcall's calls `Selection::upcall_interrupt`
//!     // and, when that says the timer fired, does the timer's work.
//!     fn vectors(&self) -> Vectors {
//!         Vectors { timer: 0x40, kick: 0x41, flush: 0x42, upcall: 0x43 }
//!     }
//! }
//!
//! static KERNEL: Kernel = Kernel;
//!
//! fn boot(cmdline: &str) -> Selection {
//!     pvi_backends::platform::install(&KERNEL);
//!     let detection = detect(&mut pvi_sdk::arch::Hardware);
//!     // SAFETY: ring 0, on the boot CPU, once, after `install`.
//!     let selection = unsafe { select(detection, cmdline) };
//!     // Each CPU, the boot CPU first, registers its records (kvmclock,
//!     // steal time, Xen's vcpu_info, …) before it uses an op.
//!     if let Err(refused) = selection.init_cpu() {
//!         panic!("{refused}");
//!     }
//!     let ops = selection.backend;
//!     let (t0, t1) = (ops.clock_ns(), ops.clock_ns());
//!     assert!(t1 >= t0, "the clock goes forward");
//!     selection
//! }
//! # let _ = boot;
//! ```
//!
//! Two things are opt-in, and what happens without them:
//!
//! - **Hypercall fix-ups** ([`pvi_sdk::fixup`]): each generated hypercall
//!   instruction records where to resume if it faults, in the
//!   `pvi_fixups` section. A kernel whose `#UD`/`#GP`/`#PF` handler looks
//!   the faulting address up with [`pvi_sdk::fixup::landing`] in
//!   [`pvi_sdk::fixup::table`] and resumes there gets "unsupported", and
//!   the op falls back. Without it a hypercall the hypervisor does not
//!   take (no hypervisor, a nested host's `vmcall`) is the kernel's fault.
//!   The table needs nothing of the link: the linker bounds the section
//!   itself, with or without a linker script.
//! - **Patched call sites** ([`pvi_sdk::patch`]): hot ops emitted through
//!   `pvi_sdk::patchable_irq_disable!()` and the like record themselves in
//!   `pvi_sites` ([`pvi_sdk::patch::sites`]); after `select`,
//!   [`pvi_sdk::patch::apply`] rewrites each to its native instructions
//!   or a direct call. Without it a site stays
//!   a call through the run-time dispatch: correct, two instructions
//!   dearer. Calling the backend's methods directly needs neither.
//!
//! The book's chapter "Use pvi in your kernel" builds the smallest kernel
//! that does this (the repository's `tests/outside-kernel/`, linked in the
//! lower half and in the higher half, booted in CI under TCG and KVM),
//! with the vectors' handlers and what each opt-in needs. The
//! example kernel does all of it, SMP included; the book ("Boot the
//! example kernel in QEMU", "The run time") explains each step.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod console_ring;
pub mod direct;
pub mod entry;
pub mod eoi_assist;
pub mod hypercall_page;
pub mod inline_forms;
pub mod native;
pub mod percpu;
pub mod platform;
pub mod retired;
pub mod select;
#[cfg(any(feature = "xen", feature = "xen_pv"))]
mod xen_console;
#[cfg(any(feature = "xen", feature = "xen_pv"))]
mod xen_events;
#[cfg(feature = "xen_pv")]
pub mod xen_pv_traps;
#[cfg(any(feature = "xen", feature = "xen_pv"))]
mod xen_runstate;
#[cfg(any(feature = "xen", feature = "xen_pv"))]
mod xen_time;

/// The run-time records of the chains, kept by the SDK (its generated
/// `Steps` defaults write them): re-exported where the kernel reads them.
pub use pvi_sdk::record::{fallback, served, withdrawn};

pub mod registry;

/// One module per hypervisor of the IDL, `src/<name>.rs`, built under the
/// cargo feature of its name: the list is the IDL's, so a backend is
/// registered by existing (see [`registry`]).
macro_rules! backend_modules {
    ($(($name:ident, $feature:literal, $variant:ident)),* $(,)?) => {
        $(
            #[cfg(feature = $feature)]
            pub mod $name;
        )*
    };
}
pvi_sdk::for_each_hypervisor!(backend_modules);
