//! Every constant the generated SDK exports, against the sourced
//! cross-check lists in `tests/upstream/*.tsv`: what a guest compiles
//! against is the upstream value, not only what the IDL says.
//! (Struct sizes and offsets are compile-time assertions in the generated
//! code, tied to the IDL, which `idl_upstream` checks against the lists.)

use pvi_sdk::generated::{hyperv, kvm, vmware, xen};

/// One hypervisor module's tables, by upstream name.
struct Tables {
    values: Vec<(&'static str, i128)>,
    bits: Vec<(&'static str, u32)>,
}

fn tables(hv: &str) -> Tables {
    macro_rules! of {
        ($m:ident) => {{
            let mut values: Vec<(&'static str, i128)> = Vec::new();
            values.extend($m::LEAVES.iter().map(|(v, n)| (*n, *v as i128)));
            values.extend($m::MSRS.iter().map(|(v, n)| (*n, *v as i128)));
            values.extend($m::HYPERCALLS.iter().map(|(v, n)| (*n, *v as i128)));
            values.extend($m::ERRORS.iter().map(|(v, n)| (*n, *v as i128)));
            values.extend($m::CONSTANTS.iter().copied());
            Tables {
                values,
                bits: $m::FEATURE_BITS.to_vec(),
            }
        }};
    }
    match hv {
        "kvm" => of!(kvm),
        "xen" => of!(xen),
        "hyperv" => of!(hyperv),
        "vmware" => of!(vmware),
        _ => Tables {
            values: vec![],
            bits: vec![],
        },
    }
}

#[test]
fn every_generated_constant_is_its_upstream_value() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (hv, lines) in pvi_tests::upstream::lists() {
        let t = tables(&hv);
        let listed = |name: &str| lines.iter().find(|l| l.name == name);
        for (name, value) in &t.values {
            checked += 1;
            match listed(name).and_then(|l| l.value) {
                Some(v) if v.is_value(*value) => {}
                Some(_) => failures.push(format!(
                    "{hv}::{name} = {value:#x}, upstream says {}",
                    listed(name).map(|l| l.raw.as_str()).unwrap_or("")
                )),
                None => failures.push(format!(
                    "{hv}::{name} has no sourced line in tests/upstream/{hv}.tsv"
                )),
            }
        }
        for (name, bit) in &t.bits {
            checked += 1;
            match listed(name).and_then(|l| l.value) {
                Some(v) if v.is_bit(*bit as i128) => {}
                _ => failures.push(format!(
                    "{hv}: feature {name} is bit {bit}, upstream list disagrees or lacks it"
                )),
            }
        }
    }
    assert!(
        checked > 300,
        "only {checked} constants checked; are the tables empty?"
    );
    assert!(
        failures.is_empty(),
        "{} generated constants disagree with upstream:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{checked} generated constants match their upstream values");
}

#[test]
fn signatures_are_upstream() {
    assert_eq!(kvm::SIGNATURES, &[*b"KVMKVMKVM\0\0\0"]);
    assert_eq!(xen::SIGNATURES, &[*b"XenVMMXenVMM"]);
    assert_eq!(hyperv::SIGNATURES, &[*b"Microsoft Hv"]);
    assert_eq!(vmware::SIGNATURES, &[*b"VMwareVMware"]);
    assert_eq!(vmware::PROBES, &["backdoor"]);
}
