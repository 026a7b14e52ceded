//! Counting a guest's VM exits by kind, for the example kernel's `exits`
//! word: in pvi-sim's own VMM, and beside QEMU (`pvi-exit-counter`).
//!
//! An exit is counted per guest access KVM intercepts, from KVM's own
//! tracepoints on the vCPU's thread (`perf_event_open`, counting mode):
//! `kvm_pio` (port I/O), `kvm_mmio` (MMIO that KVM emulates, in the kernel
//! or in the VMM), `kvm_msr` (an MSR KVM handles), `kvm_cpuid` and
//! `kvm_hypercall`. They fire whether KVM answers the access itself (the
//! local APIC, the PIT, kvmclock's MSRs) or hands it to the VMM, and
//! whether the host runs the guest on hardware virtualization or emulates
//! its instructions, as this project's CI machines do (their KVM's own
//! `exits` counter then also counts emulation batches, so it is not used).
//!
//! The guest asks for a reading through a mailbox in its memory (layout
//! in `example-kernel/src/exits.rs`): it writes a new request number and
//! spins, with no exit, until the answer carries that number. A reading
//! thus falls exactly between two of the guest's instructions.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kinds, in the mailbox's order after the total, with the KVM
/// tracepoint that counts each; then `kvm_userspace_exit`, the exits among
/// them that KVM handed to the VMM in user space, and `kvm_pv_eoi`, the
/// paravirtual EOIs KVM saw the guest complete without an exit (it fires
/// when KVM finds the flag it set cleared).
pub const TRACEPOINTS: [&str; 7] = [
    "kvm_pio",
    "kvm_mmio",
    "kvm_msr",
    "kvm_cpuid",
    "kvm_hypercall",
    "kvm_userspace_exit",
    "kvm_pv_eoi",
];

/// Each tracepoint's filter: `kvm_mmio` fires twice for a read the VMM
/// completes (`KVM_TRACE_MMIO_READ_UNSATISFIED`, 0, when KVM hands it
/// over, then the read itself), so the first is left out; a return to
/// user space for a signal (`KVM_EXIT_INTR`, 10) is the host's, not an
/// exit of the guest's.
const FILTERS: [Option<&str>; 7] = [
    None,
    Some("type != 0"),
    None,
    None,
    None,
    Some("reason != 10"),
    None,
];

/// `PERF_EVENT_IOC_SET_FILTER`: `_IOW('$', 6, char *)`.
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;

/// Counters in a reading: the total, one per kind, how many of them the
/// VMM completed in user space, and exit-free paravirtual EOIs.
pub const COUNTERS: usize = 8;

/// Where tracefs is mounted, mounting it at `/sys/kernel/tracing` if no
/// mount shows KVM's events (which needs root).
pub fn tracefs() -> Result<PathBuf, String> {
    let places = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let has_kvm = |p: &str| Path::new(p).join("events/kvm/kvm_pio/id").exists();
    if let Some(p) = places.iter().find(|p| has_kvm(p)) {
        return Ok(PathBuf::from(p));
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", places[0]])
        .status();
    if has_kvm(places[0]) {
        eprintln!(
            "pvi-exit-counting: mounted tracefs at {} for KVM's tracepoints",
            places[0]
        );
        return Ok(PathBuf::from(places[0]));
    }
    Err(format!(
        "KVM's tracepoints are not visible (no tracefs with events/kvm; mounting one: {status:?})"
    ))
}

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER0` (Linux
/// include/uapi/linux/perf_event.h): the fields a counting tracepoint
/// event needs; the kernel takes the first 64 bytes of today's layout.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// `PERF_TYPE_TRACEPOINT`.
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// KVM's tracepoints counted on one thread.
pub struct Tracepoints {
    counters: Vec<File>,
}

impl Tracepoints {
    /// Count [`TRACEPOINTS`] on thread `tid` (0: the calling thread).
    pub fn open(tid: i32) -> Result<Self, String> {
        let tracefs = tracefs()?;
        let mut counters = Vec::new();
        for (name, filter) in TRACEPOINTS.into_iter().zip(FILTERS) {
            let id_file = tracefs.join("events/kvm").join(name).join("id");
            let id: u64 = std::fs::read_to_string(&id_file)
                .map_err(|e| format!("{}: {e}", id_file.display()))?
                .trim()
                .parse()
                .map_err(|e| format!("{}: {e}", id_file.display()))?;
            let attr = PerfEventAttr {
                kind: PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<PerfEventAttr>() as u32,
                config: id,
                ..PerfEventAttr::default()
            };
            // SAFETY: `attr` is a valid VER0 perf_event_attr that outlives
            // the call; the kernel only reads it and returns a new file
            // descriptor (or -1).
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    tid,
                    -1,
                    -1,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(format!(
                    "perf_event_open({name}) on thread {tid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: `fd` was just returned by the kernel, owned by no one.
            let counter = File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            if let Some(filter) = filter {
                let text = std::ffi::CString::new(filter).map_err(|e| e.to_string())?;
                // SAFETY: the ioctl reads the NUL-terminated filter, which
                // outlives the call, on a perf event we own.
                let done = unsafe {
                    libc::ioctl(
                        std::os::fd::AsRawFd::as_raw_fd(&counter),
                        PERF_EVENT_IOC_SET_FILTER as _,
                        text.as_ptr(),
                    )
                };
                if done < 0 {
                    return Err(format!(
                        "filtering {name} with {filter:?}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
            counters.push(counter);
        }
        Ok(Self { counters })
    }

    /// Each tracepoint's count so far, in [`TRACEPOINTS`]' order.
    pub fn read(&self) -> [u64; 7] {
        core::array::from_fn(|i| {
            let mut value = [0u8; 8];
            match std::io::Read::read(&mut &self.counters[i], &mut value) {
                Ok(8) => u64::from_ne_bytes(value),
                _ => 0,
            }
        })
    }
}

/// A reading for the mailbox: the total, each kind, those completed in
/// user space, and exit-free paravirtual EOIs; `port_hypercalls` of the port accesses were hypercalls
/// (pvi-sim's hypercall port, the VMware backdoor) and `user_msrs` MSR
/// accesses went to the VMM, which KVM's `kvm_msr` does not count.
pub fn reading(counts: [u64; 7], port_hypercalls: u64, user_msrs: u64) -> [u64; COUNTERS] {
    let [pio, mmio, msr, cpuid, hypercall, to_vmm, pv_eoi] = counts;
    let kinds = [
        pio.saturating_sub(port_hypercalls),
        mmio,
        msr + user_msrs,
        cpuid,
        hypercall + port_hypercalls,
    ];
    let mut all = [0; COUNTERS];
    all[0] = kinds.iter().sum();
    all[1..6].copy_from_slice(&kinds);
    all[6] = to_vmm;
    all[7] = pv_eoi;
    all
}

/// A guest-physical address, in hex (`0x…`) or decimal: the mailbox's, as
/// the command lines of pvi-sim and pvi-exit-counter take it.
pub fn parse_address(text: &str) -> Result<u64, String> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|e| format!("{text:?} is not an address: {e}"))
}

/// Guest memory a mailbox lives in.
pub trait GuestWords {
    /// The 8 bytes at guest-physical `at`.
    fn read(&self, at: u64) -> Option<u64>;
    /// Store 8 bytes at guest-physical `at`.
    fn write(&self, at: u64, value: u64);
}

/// Answer the guest's mailbox at `mailbox` with `reading()` until
/// `finished()`; polls every 20 µs.
pub fn serve(
    memory: &dyn GuestWords,
    mailbox: u64,
    reading: &dyn Fn() -> [u64; COUNTERS],
    finished: &dyn Fn() -> bool,
) {
    let mut answered = memory.read(mailbox + 8).unwrap_or(0);
    while !finished() {
        let request = memory.read(mailbox).unwrap_or(answered);
        if request != answered {
            for (i, value) in reading().iter().enumerate() {
                memory.write(mailbox + 16 + 8 * i as u64, *value);
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            memory.write(mailbox + 8, request);
            answered = request;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    struct Words(RefCell<HashMap<u64, u64>>);

    impl GuestWords for Words {
        fn read(&self, at: u64) -> Option<u64> {
            self.0.borrow().get(&at).copied()
        }
        fn write(&self, at: u64, value: u64) {
            self.0.borrow_mut().insert(at, value);
        }
    }

    #[test]
    fn port_hypercalls_and_user_msrs_move_between_kinds() {
        let r = reading([5, 1, 2, 3, 0, 7, 9], 4, 2);
        assert_eq!(r, [13, 1, 1, 4, 3, 4, 7, 9]);
    }

    #[test]
    fn a_request_is_answered_with_counters_before_the_number() {
        let words = Words(RefCell::new(HashMap::new()));
        words.write(0x1000, 7);
        let rounds = std::cell::Cell::new(0);
        serve(&words, 0x1000, &|| [1, 2, 3, 4, 5, 6, 7, 8], &|| {
            rounds.set(rounds.get() + 1);
            rounds.get() > 2
        });
        assert_eq!(words.read(0x1008), Some(7));
        assert_eq!(words.read(0x1010), Some(1));
        assert_eq!(words.read(0x1010 + 56), Some(8));
    }
}
