//! The `xen` personality (HVM): the "XenVMMXenVMM" leaves, the hypercall
//! page (filled when the guest writes its address to the MSR that leaf
//! base+2 names; 32-byte stubs `mov eax, N; out 0xe7, al; ret`), and the
//! hypercalls pvi's Xen backend makes: xen_version, console_io (to the
//! serial output), memory_op add_to_physmap for shared_info (its
//! vcpu_time_info kept a valid pvclock, and the wall clock), sched_op
//! yield and shutdown. The rest return -XEN_ENOSYS, which the guest reads
//! as "fall back".
//!
//! Not yet: event channels and the singleshot timer's upcall, the
//! runstate area, hvm_op.

use crate::fault::Fault;
use crate::personality::{leaf, HYPERCALL_PORT};
use kvm_bindings::kvm_cpuid_entry2;
use pvi_sdk::generated::xen::{
    __HYPERVISOR_console_io, __HYPERVISOR_memory_op, __HYPERVISOR_sched_op,
    __HYPERVISOR_xen_version, CONSOLEIO_write, SCHEDOP_shutdown, SCHEDOP_yield, SHUTDOWN_crash,
    XENMAPSPACE_shared_info, XENMEM_add_to_physmap, XEN_CPUID_FIRST_LEAF, XEN_CPUID_HVM_FEATURES,
    XEN_CPUID_HYPERCALL, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX,
    XEN_CPUID_TIME, XEN_CPUID_VERSION, XEN_ENOSYS, XEN_LEGACY_MAX_VCPUS,
};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The MSR that takes the hypercall page's address (leaf base+2's ebx).
pub const HYPERCALL_MSR: u32 = 0x4000_0000;
/// Xen 4.17.
const VERSION: u32 = 4 << 16 | 17;
/// vcpu_info is 64 bytes; its vcpu_time_info is at 32.
const VCPU_INFO_BYTES: u64 = 64;
const VCPU_TIME_OFFSET: u64 = 32;
/// shared_info's wall clock: wc_version, wc_sec, wc_nsec, wc_sec_hi.
const WALL_CLOCK_OFFSET: u64 = 3072;
/// vcpu_time_info flags: the TSCs are synchronised.
const PVCLOCK_TSC_STABLE_BIT: u8 = 1;

/// The Xen leaves for vCPU `vcpu` whose TSC runs at `tsc_khz`.
pub fn cpuid_leaves(tsc_khz: u32, vcpu: u32) -> Vec<kvm_cpuid_entry2> {
    vec![
        leaf(
            XEN_CPUID_FIRST_LEAF,
            XEN_CPUID_HVM_FEATURES,
            XEN_CPUID_SIGNATURE_EBX,
            XEN_CPUID_SIGNATURE_ECX,
            XEN_CPUID_SIGNATURE_EDX,
        ),
        leaf(XEN_CPUID_VERSION, VERSION, 0, 0, 0),
        // One hypercall page, through HYPERCALL_MSR.
        leaf(XEN_CPUID_HYPERCALL, 1, HYPERCALL_MSR, 0, 0),
        // Subleaf 0: no TSC-mode information; ecx: the guest TSC in kHz.
        leaf(XEN_CPUID_TIME, 0, 0, tsc_khz, 0),
        // XEN_HVM_CPUID_VCPU_ID_PRESENT (bit 3), the vCPU id in ebx.
        leaf(XEN_CPUID_HVM_FEATURES, 1 << 3, vcpu, 0, 0),
    ]
}

/// The multiplier and shift of a pvclock for a TSC at `tsc_hz`:
/// ns = ((ticks << shift) * mul) >> 32 (shift < 0: >> -shift), with the
/// largest multiplier that fits for precision.
pub fn pvclock_scale(tsc_hz: u64) -> (u32, i8) {
    let mut shift: i32 = 0;
    let mul = |shift: i32| -> u128 {
        let ns = 1_000_000_000u128 << 32;
        if shift >= 0 {
            ns / (u128::from(tsc_hz.max(1)) << shift)
        } else {
            (ns << -shift) / u128::from(tsc_hz.max(1))
        }
    };
    while mul(shift) > u128::from(u32::MAX) && shift < 31 {
        shift += 1;
    }
    while mul(shift - 1) <= u128::from(u32::MAX) && shift > -31 {
        shift -= 1;
    }
    (mul(shift) as u32, shift as i8)
}

/// What a hypercall leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return this to the guest (rax).
    Return(i64),
    /// Write these bytes to the console, then return 0.
    Console(Vec<u8>),
    /// The guest shut down with this SHUTDOWN_* reason.
    Shutdown(u32),
}

/// The domain's hypervisor-side state.
pub struct Xen {
    shared_info: Mutex<Option<u64>>,
    started: Instant,
    tsc_at_start: u64,
    tsc_hz: u64,
    cpus: u32,
    fault: Option<Fault>,
}

impl Xen {
    /// A domain of `cpus` vCPUs whose TSCs run at `tsc_khz` and read
    /// `tsc_at_start` now, when it starts.
    pub fn new(tsc_khz: u32, cpus: u32, tsc_at_start: u64, fault: Option<Fault>) -> Xen {
        Xen {
            shared_info: Mutex::new(None),
            started: Instant::now(),
            tsc_at_start,
            tsc_hz: u64::from(tsc_khz) * 1000,
            cpus,
            fault,
        }
    }

    /// Fill the hypercall page at `gpa`.
    pub fn fill_hypercall_page(&self, memory: &GuestMemoryMmap, gpa: u64) -> Result<(), ()> {
        if self.fault == Some(Fault::HypercallPageEmpty) {
            return memory
                .write_slice(&[0u8; 4096], GuestAddress(gpa & !0xfff))
                .map_err(|_| ());
        }
        let mut page = vec![0xcc_u8; 4096];
        for (n, stub) in page.chunks_mut(32).enumerate() {
            let n = (n as u32).to_le_bytes();
            // mov eax, n; out HYPERCALL_PORT, al; ret
            stub[..8].copy_from_slice(&[
                0xb8,
                n[0],
                n[1],
                n[2],
                n[3],
                0xe6,
                HYPERCALL_PORT as u8,
                0xc3,
            ]);
        }
        memory
            .write_slice(&page, GuestAddress(gpa & !0xfff))
            .map_err(|_| ())
    }

    /// A hypercall `number` with arguments rdi, rsi, rdx, r10, r8; guest
    /// addresses are read through `read` (linear address to bytes).
    // The patterns are Xen's own names (`__HYPERVISOR_*`), kept so they can
    // be grepped for.
    #[allow(non_upper_case_globals)]
    pub fn hypercall(
        &self,
        memory: &GuestMemoryMmap,
        number: u64,
        args: [u64; 5],
        read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
    ) -> Outcome {
        let enosys = Outcome::Return(-XEN_ENOSYS);
        if self.fault == Some(Fault::HypercallsUnsupported) {
            return enosys;
        }
        match number {
            __HYPERVISOR_xen_version => Outcome::Return(i64::from(VERSION)),
            __HYPERVISOR_console_io if args[0] == u64::from(CONSOLEIO_write) => {
                match read(args[2], (args[1] as usize).min(4096)) {
                    Some(bytes) => Outcome::Console(bytes),
                    None => Outcome::Return(-14), // -XEN_EFAULT
                }
            }
            __HYPERVISOR_memory_op if args[0] == u64::from(XENMEM_add_to_physmap) => {
                // xen_add_to_physmap: domid u16, size u16, space u32, idx
                // u64, gpfn u64.
                let Some(arg) = read(args[1], 24) else {
                    return Outcome::Return(-14);
                };
                let space = u32::from_le_bytes(arg[4..8].try_into().unwrap_or_default());
                let gpfn = u64::from_le_bytes(arg[16..24].try_into().unwrap_or_default());
                if space != XENMAPSPACE_shared_info {
                    return enosys;
                }
                match self.map_shared_info(memory, gpfn << 12) {
                    Ok(()) => Outcome::Return(0),
                    Err(()) => Outcome::Return(-14),
                }
            }
            __HYPERVISOR_sched_op if args[0] == u64::from(SCHEDOP_yield) => Outcome::Return(0),
            __HYPERVISOR_sched_op if args[0] == u64::from(SCHEDOP_shutdown) => {
                match read(args[1], 4) {
                    Some(r) => {
                        Outcome::Shutdown(u32::from_le_bytes(r[..4].try_into().unwrap_or_default()))
                    }
                    None => Outcome::Return(-14),
                }
            }
            _ => enosys,
        }
    }

    /// Put shared_info at `gpa`: each vCPU's time record (system time in ns
    /// since the domain started) and the wall clock at the domain's start.
    fn map_shared_info(&self, memory: &GuestMemoryMmap, gpa: u64) -> Result<(), ()> {
        let mut page = vec![0u8; 4096];
        let (mul, shift) = pvclock_scale(self.tsc_hz);
        for vcpu in 0..u64::from(self.cpus.min(XEN_LEGACY_MAX_VCPUS)) {
            let t = (vcpu * VCPU_INFO_BYTES + VCPU_TIME_OFFSET) as usize;
            // Version 2 (even: stable; odd under the fault: an update that
            // never ends); system time 0 at the TSC reading taken when the
            // domain started.
            let version: u32 = if self.fault == Some(Fault::PvclockStuckOdd) {
                1
            } else {
                2
            };
            page[t..t + 4].copy_from_slice(&version.to_le_bytes());
            page[t + 8..t + 16].copy_from_slice(&self.tsc_at_start.to_le_bytes());
            page[t + 24..t + 28].copy_from_slice(&mul.to_le_bytes());
            page[t + 28] = shift as u8;
            page[t + 29] = PVCLOCK_TSC_STABLE_BIT;
        }
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(self.started.elapsed());
        let w = WALL_CLOCK_OFFSET as usize;
        page[w..w + 4].copy_from_slice(&2u32.to_le_bytes());
        page[w + 4..w + 8].copy_from_slice(&(boot.as_secs() as u32).to_le_bytes());
        page[w + 8..w + 12].copy_from_slice(&boot.subsec_nanos().to_le_bytes());
        page[w + 12..w + 16].copy_from_slice(&((boot.as_secs() >> 32) as u32).to_le_bytes());
        memory
            .write_slice(&page, GuestAddress(gpa))
            .map_err(|_| ())?;
        *self
            .shared_info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(gpa);
        Ok(())
    }
}

/// The exit status for a SHUTDOWN_* reason: a crash is a panic (1), the
/// rest a clean stop (0).
pub fn shutdown_status(reason: u32) -> u8 {
    u8::from(reason == SHUTDOWN_crash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvi_sdk::time::pvclock::scale_delta;

    #[test]
    fn the_pvclock_scale_turns_a_second_of_ticks_into_a_second() {
        for hz in [
            1_000_000u64,
            999_999_999,
            1_000_000_000,
            2_596_122_000,
            5_000_000_000,
        ] {
            let (mul, shift) = pvclock_scale(hz);
            let ns = scale_delta(hz, mul, shift);
            assert!(
                ns.abs_diff(1_000_000_000) <= 2,
                "{hz} Hz: {ns} ns ({mul}, {shift})"
            );
            assert!(mul >= 1 << 31, "{hz} Hz: mul {mul} loses precision");
        }
    }

    #[test]
    fn unknown_hypercalls_are_enosys() {
        let xen = Xen::new(1_000_000, 1, 0, None);
        let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let none = |_: u64, _: usize| None;
        assert_eq!(
            xen.hypercall(&memory, 99, [0; 5], &none),
            Outcome::Return(-XEN_ENOSYS)
        );
        assert_eq!(
            xen.hypercall(&memory, __HYPERVISOR_xen_version, [0; 5], &none),
            Outcome::Return(i64::from(VERSION))
        );
    }
}
