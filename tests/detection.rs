//! Hypervisor detection over CPUID fixtures: every hypervisor of the IDL,
//! stacked interfaces, bare metal, the backdoor probe, and hostile answers
//! (absurd max leaves, signatures at odd bases, garbage, repeating CPUs).

use pvi_sdk::detect::{
    backend_override, detect, withdraw_requests, Cpu, Detection, How, Regs, Verdict, FIRST_BASE,
};
use pvi_sdk::generated::{Hypervisor, HYPERVISORS};
use std::collections::BTreeMap;

/// A CPU that answers from a table; unlisted leaves return `default`.
#[derive(Default)]
struct Fixture {
    leaves: BTreeMap<u32, Regs>,
    default: Regs,
    backdoor: Option<u32>,
    probes: Vec<String>,
    reads: usize,
}

impl Fixture {
    fn bare_metal() -> Fixture {
        Fixture::default()
    }

    fn virtual_machine() -> Fixture {
        let mut f = Fixture::default();
        f.leaves.insert(
            1,
            Regs {
                ecx: 1 << 31,
                ..Regs::default()
            },
        );
        f
    }

    fn signature(mut self, base: u32, sig: &[u8; 12], max: u32) -> Fixture {
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        self.leaves.insert(
            base,
            Regs {
                eax: max,
                ebx: word(0),
                ecx: word(4),
                edx: word(8),
            },
        );
        self
    }

    fn backdoor(mut self, version: u32) -> Fixture {
        self.backdoor = Some(version);
        self
    }
}

impl Cpu for Fixture {
    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> Regs {
        self.reads += 1;
        self.leaves.get(&leaf).copied().unwrap_or(self.default)
    }

    fn probe(&mut self, probe: &str) -> Option<u32> {
        self.probes.push(probe.to_string());
        self.backdoor
    }
}

fn id(name: &str) -> Hypervisor {
    Hypervisor::named(name).unwrap_or_else(|| panic!("no hypervisor {name} in the IDL"))
}

const KVM: &[u8; 12] = b"KVMKVMKVM\0\0\0";
const XEN: &[u8; 12] = b"XenVMMXenVMM";
const HYPERV: &[u8; 12] = b"Microsoft Hv";
const VMWARE: &[u8; 12] = b"VMwareVMware";
const TCG: &[u8; 12] = b"TCGTCGTCGTCG";

#[test]
fn bare_metal_is_native_and_the_leaves_are_not_scanned() {
    let mut cpu = Fixture::bare_metal();
    let d = detect(&mut cpu);
    assert!(!d.hypervisor_bit);
    assert_eq!(d.backend_name(), "native");
    assert_eq!(d.found().count(), 0);
    assert!(cpu.reads < 3, "scanned {} leaves on bare metal", cpu.reads);
    assert_eq!(
        d.probed,
        Some(("backdoor", false)),
        "with no signature, the backdoor is probed"
    );
}

#[test]
fn each_hypervisor_by_its_signature() {
    for (sig, name) in [
        (KVM, "kvm"),
        (XEN, "xen"),
        (HYPERV, "hyperv"),
        (VMWARE, "vmware"),
    ] {
        let mut cpu = Fixture::virtual_machine().signature(FIRST_BASE, sig, FIRST_BASE + 0x10);
        let d = detect(&mut cpu);
        assert_eq!(d.backend_name(), name, "{name}:\n{d}");
        let c = d.chosen.unwrap();
        assert_eq!((c.base, c.how), (FIRST_BASE, How::Signature));
        assert_eq!(d.verdict(id(name)), Verdict::Chosen);
        assert!(cpu.probes.is_empty(), "{name}: no probe when CPUID answers");
    }
}

#[test]
fn kvm_behind_hyperv_enlightenments_is_kvm() {
    let mut cpu = Fixture::virtual_machine()
        .signature(FIRST_BASE, HYPERV, FIRST_BASE + 5)
        .signature(FIRST_BASE + 0x100, KVM, FIRST_BASE + 0x101);
    let d = detect(&mut cpu);
    let c = d.chosen.unwrap();
    assert_eq!((d.backend_name(), c.base), ("kvm", 0x4000_0100));
    assert_eq!(c.how, How::Stacked { over: id("hyperv") });
    assert_eq!(
        d.verdict(id("hyperv")),
        Verdict::Outranked { by: id("kvm") }
    );
    assert_eq!(
        c.leaf(0x4000_0001),
        0x4000_0101,
        "KVM's leaves are read at its own base"
    );
    assert!(d.to_string().contains("over hyperv"), "{d}");
}

#[test]
fn xen_with_viridian_is_xen() {
    let mut cpu = Fixture::virtual_machine()
        .signature(FIRST_BASE, HYPERV, FIRST_BASE + 5)
        .signature(FIRST_BASE + 0x100, XEN, FIRST_BASE + 0x105);
    assert_eq!(detect(&mut cpu).backend_name(), "xen");
}

#[test]
fn an_unknown_hypervisor_is_native_without_probing() {
    let mut cpu = Fixture::virtual_machine()
        .signature(FIRST_BASE, TCG, FIRST_BASE + 1)
        .backdoor(6);
    let d = detect(&mut cpu);
    assert_eq!(d.backend_name(), "native");
    assert_eq!(d.found().next().unwrap().signature, *TCG);
    assert!(cpu.probes.is_empty(), "CPUID said something: no probe");
    let report = d.to_string();
    assert!(
        report.contains("\"TCGTCGTCGTCG\"") && report.contains("not one pvi knows"),
        "{report}"
    );
}

#[test]
fn the_backdoor_answers_when_cpuid_is_silent() {
    let mut cpu = Fixture::virtual_machine().backdoor(6);
    let d = detect(&mut cpu);
    assert_eq!(d.backend_name(), "vmware");
    assert_eq!(d.chosen.unwrap().how, How::Probe { version: 6 });
    assert_eq!(cpu.probes, ["backdoor"]);
}

#[test]
fn the_backdoor_answers_without_the_hypervisor_bit() {
    let mut cpu = Fixture::bare_metal().backdoor(4);
    assert_eq!(detect(&mut cpu).backend_name(), "vmware");
}

#[test]
fn hypervisor_bit_without_any_signature_is_native() {
    let mut cpu = Fixture::virtual_machine();
    let d = detect(&mut cpu);
    assert_eq!(d.backend_name(), "native");
    assert_eq!(d.probed, Some(("backdoor", false)));
}

#[test]
fn an_absurd_max_leaf_is_bounded_to_its_block() {
    let mut cpu = Fixture::virtual_machine().signature(FIRST_BASE, KVM, 0xFFFF_FFFF);
    let d = detect(&mut cpu);
    let f = d.found().next().unwrap();
    assert_eq!(
        (d.backend_name(), f.max_leaf, f.reported_max),
        ("kvm", FIRST_BASE + 0xFF, 0xFFFF_FFFF)
    );
    assert!(d.to_string().contains("bounded to its block"), "{d}");
}

#[test]
fn a_max_leaf_below_the_base_is_the_base() {
    let mut cpu = Fixture::virtual_machine().signature(FIRST_BASE, KVM, 0);
    let d = detect(&mut cpu);
    assert_eq!(
        (d.backend_name(), d.found().next().unwrap().max_leaf),
        ("kvm", FIRST_BASE)
    );
}

#[test]
fn a_signature_at_an_odd_base_is_found_there() {
    let mut cpu = Fixture::virtual_machine().signature(0x4000_0300, KVM, 0x4000_0301);
    let d = detect(&mut cpu);
    let c = d.chosen.unwrap();
    assert_eq!(
        (d.backend_name(), c.base, c.leaf(0x4000_0001)),
        ("kvm", 0x4000_0300, 0x4000_0301)
    );
}

#[test]
fn the_last_base_is_scanned() {
    let mut cpu = Fixture::virtual_machine().signature(0x4000_FF00, XEN, 0x4000_FF05);
    assert_eq!(detect(&mut cpu).chosen.map(|c| c.base), Some(0x4000_FF00));
}

#[test]
fn garbage_in_every_leaf_is_native_and_reported() {
    let mut cpu = Fixture::virtual_machine();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut base = FIRST_BASE;
    while base <= 0x4000_FF00 {
        cpu.leaves.insert(
            base,
            Regs {
                eax: rng.u32(..),
                ebx: rng.u32(..),
                ecx: rng.u32(..),
                edx: rng.u32(..),
            },
        );
        base += 0x100;
    }
    let d = detect(&mut cpu);
    assert_eq!(d.backend_name(), "native");
    assert!(d.others > 0, "unprintable answers are counted");
    let _ = d.to_string();
}

#[test]
fn a_cpu_repeating_its_last_leaf_everywhere_is_one_answer() {
    let mut cpu = Fixture::virtual_machine();
    cpu.default = Regs {
        eax: 0x0d,
        ebx: 0x756e_6547,
        ecx: 0x6c65_746e,
        edx: 0x4965_6e69,
    };
    let d = detect(&mut cpu);
    assert_eq!(
        d.found().count(),
        1,
        "one repeated answer, not 256 hypervisors"
    );
    assert_eq!(d.backend_name(), "native");
}

#[test]
fn more_signatures_than_the_report_keeps() {
    let mut cpu = Fixture::virtual_machine();
    for i in 0..12u32 {
        cpu = cpu.signature(
            FIRST_BASE + i * 0x100,
            b"OtherHypervi",
            FIRST_BASE + i * 0x100,
        );
    }
    cpu = cpu.signature(FIRST_BASE + 0x2000, KVM, FIRST_BASE + 0x2001);
    let d = detect(&mut cpu);
    assert_eq!(d.found().count(), 8);
    assert_eq!(
        d.others, 5,
        "four unknown beyond the eight kept, and the one KVM displaced"
    );
    assert_eq!(
        d.backend_name(),
        "kvm",
        "unknown signatures cannot hide a known one"
    );
}

#[test]
fn the_kernel_command_line_names_a_backend() {
    assert_eq!(
        backend_override("console=ttyS0 pvi.backend=native selftest"),
        Some("native")
    );
    assert_eq!(
        backend_override("pvi.backend=kvm pvi.backend=xen"),
        Some("xen"),
        "the last one wins, as in Linux"
    );
    assert_eq!(backend_override("selftest"), None);
}

#[test]
fn the_kernel_command_line_withdraws_steps_and_names_what_it_cannot() {
    let asked: Vec<_> = withdraw_requests(
        "selftest pvi.withdraw=tsc_hz:1,console_write:2 pvi.withdraw=clock_ns:0,eoi,:1,x:y",
    )
    .collect();
    assert_eq!(
        asked,
        [
            Ok(("tsc_hz", 1)),
            Ok(("console_write", 2)),
            Err("clock_ns:0"),
            Err("eoi"),
            Err(":1"),
            Err("x:y"),
        ]
    );
    assert_eq!(withdraw_requests("pvi.withdraw= selftest").count(), 0);
}

#[test]
fn every_hypervisor_of_the_idl_is_detectable() {
    for h in HYPERVISORS {
        assert!(
            !h.signatures.is_empty() || !h.probes.is_empty() || !h.entries.is_empty(),
            "{} cannot be detected",
            h.name
        );
        // Found by its entry point: the kernel that came in there says so,
        // and CPUID, whatever it shows, never picks it.
        for &note in h.entries {
            let d = Detection::entered(h.id).expect("an entry note");
            let chosen = d.chosen.expect("chosen by the entry");
            assert_eq!((chosen.hypervisor, chosen.how), (h.id, How::Entry { note }));
            assert!(d.to_string().contains(note), "{d}");
            for other in HYPERVISORS {
                for sig in other.signatures {
                    let mut cpu =
                        Fixture::virtual_machine().signature(FIRST_BASE, sig, FIRST_BASE + 1);
                    assert_ne!(detect(&mut cpu).chosen.map(|c| c.hypervisor), Some(h.id));
                }
            }
        }
        for sig in h.signatures {
            let mut cpu = Fixture::virtual_machine().signature(FIRST_BASE, sig, FIRST_BASE + 1);
            assert_eq!(
                detect(&mut cpu).chosen.map(|c| c.hypervisor),
                Some(h.id),
                "{}",
                h.name
            );
        }
    }
}

/// The vendor string is leaf 0's ebx, edx, ecx, in that order (not the
/// ebx, ecx, edx of hypervisor signatures): what `choose … when vendor`
/// compares.
#[test]
fn the_cpu_vendor_is_read_as_ebx_edx_ecx() {
    let word = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let mut cpu = Fixture::bare_metal();
    cpu.leaves.insert(
        0,
        Regs {
            eax: 0x10,
            ebx: word(b"Auth"),
            edx: word(b"enti"),
            ecx: word(b"cAMD"),
        },
    );
    assert_eq!(&pvi_sdk::detect::cpu_vendor(&mut cpu), b"AuthenticAMD");
}

/// Only a hypervisor with an entry note can be chosen by an entry: a
/// kernel cannot have come in through KVM's.
#[test]
fn no_entry_is_claimed_for_a_hypervisor_without_an_entry_note() {
    for h in HYPERVISORS.iter().filter(|h| h.entries.is_empty()) {
        assert_eq!(Detection::entered(h.id), None, "{}", h.name);
    }
    assert!(Detection::entered(Hypervisor::XenPv).is_some());
}
