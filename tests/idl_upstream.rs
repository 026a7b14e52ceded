//! Every number in `idl/` against the sourced cross-check lists in
//! `tests/upstream/*.tsv` (NAME, VALUE as upstream writes it, SOURCE), in
//! both directions: each listed value matches the IDL, and each numbered
//! item of the IDL is listed.

use pvi_codegen::ast::*;
use pvi_codegen::Model;
use std::collections::BTreeMap;

/// Numbered things of one hypervisor (or the shared structs), by name.
#[derive(Default)]
struct Numbers {
    values: BTreeMap<String, i128>,
    bits: BTreeMap<String, i128>,
    signature: Vec<Vec<u8>>,
}

fn structs_into(n: &mut Numbers, t: &TypeDecl) {
    if let TypeDecl::Flags(e) = t {
        for m in &e.members {
            n.bits.insert(m.name.name.clone(), m.value.value);
            // C bitfields are listed as `struct.field`.
            n.bits
                .insert(format!("{}.{}", e.name.name, m.name.name), m.value.value);
        }
    }
    if let TypeDecl::Enum(e) = t {
        for m in &e.members {
            n.values.insert(m.name.name.clone(), m.value.value);
        }
    }
    if let TypeDecl::Struct(s) = t {
        n.values
            .insert(format!("{}#size", s.name.name), s.size.value);
        for f in &s.fields {
            n.values
                .insert(format!("{}.{}", s.name.name, f.name.name), f.offset.value);
        }
    }
}

/// Struct sizes and field offsets of every file: types share one namespace.
fn all_structs(model: &Model) -> Numbers {
    let mut n = Numbers::default();
    for t in model.types.values() {
        structs_into(&mut n, t);
    }
    n
}

fn numbers_of(model: &Model, hv_name: &str) -> Numbers {
    let mut n = Numbers::default();
    if hv_name == "pvclock" {
        return n;
    }
    let hv = model
        .hypervisors()
        .find(|h| h.name.name == hv_name)
        .unwrap_or_else(|| panic!("no hypervisor `{hv_name}`"));
    for item in &hv.items {
        match item {
            HvItem::Detect(d) => {
                n.signature = d.signatures.iter().map(|s| s.value.clone()).collect()
            }
            HvItem::Leaf(l) => drop(n.values.insert(l.name.name.clone(), l.address.value)),
            HvItem::Features(f) => {
                for b in &f.bits {
                    n.bits.insert(b.name.name.clone(), b.value.value);
                }
            }
            HvItem::Msr(m) => drop(n.values.insert(m.name.name.clone(), m.index.value)),
            HvItem::Const(c) => drop(n.values.insert(c.name.name.clone(), c.value.value)),
            HvItem::Hypercall(h) => drop(n.values.insert(h.name.name.clone(), h.number.value)),
            HvItem::Error(e) => drop(n.values.insert(e.name.name.clone(), e.code.value)),
            HvItem::Abi(_) | HvItem::Convention(_) | HvItem::Map(_) | HvItem::Type(_) => {}
        }
    }
    n
}

fn unescape(s: &str) -> Vec<u8> {
    let s = s.trim().trim_matches('"');
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('0') => out.push(0),
                Some(o) => out.push(o as u8),
                None => {}
            },
            (c, false) => out.push(c as u8),
        }
    }
    out
}

#[test]
fn every_number_matches_its_upstream_source() {
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.expect("idl/ checks clean");
    let mut failures = Vec::new();
    let mut checked = 0;
    let lists = pvi_tests::upstream::lists();
    // A hypervisor that takes another's ABI (`abi xen;`) declares no
    // numbers of its own: its owner's list covers them.
    let mut hv_names: Vec<String> = model
        .hypervisors()
        .filter(|h| h.abi().is_none())
        .map(|h| h.name.name.clone())
        .collect();
    hv_names.push("pvclock".into());
    for hv in &hv_names {
        assert!(
            lists.iter().any(|(stem, _)| stem == hv),
            "no cross-check list tests/upstream/{hv}.tsv"
        );
    }
    let structs = all_structs(&model);
    let mut structs_listed = std::collections::BTreeSet::new();
    for (hv, lines) in &lists {
        let numbers = numbers_of(&model, hv);
        let mut listed = std::collections::BTreeSet::new();
        for line in lines {
            checked += 1;
            let (at, name, key) = (&line.at, &line.name, &line.key);
            if name == "signature" {
                if !numbers.signature.contains(&unescape(&line.raw)) {
                    failures.push(format!("{at}: signature {} is not declared", line.raw));
                }
                continue;
            }
            listed.insert(key.clone());
            let Some(wanted) = line.value else {
                failures.push(format!("{at}: cannot read value `{}`", line.raw));
                continue;
            };
            if let Some(&bit) = numbers.bits.get(key).or_else(|| structs.bits.get(key)) {
                if !wanted.is_bit(bit) {
                    failures.push(format!(
                        "{at}: feature `{name}` is bit {bit} in the IDL, upstream says {}",
                        line.raw
                    ));
                }
            } else if let Some(&v) = numbers.values.get(key).or_else(|| structs.values.get(key)) {
                structs_listed.insert(key.clone());
                if !wanted.is_value(v) {
                    failures.push(format!(
                        "{at}: `{name}` is {v:#x} in the IDL, upstream says {}",
                        line.raw
                    ));
                }
            } else {
                failures.push(format!(
                    "{at}: `{name}` is listed but not declared in the IDL"
                ));
            }
        }
        for name in numbers.values.keys().chain(numbers.bits.keys()) {
            if !listed.contains(name) {
                failures.push(format!("{hv}: `{name}` is declared in the IDL but has no sourced line in tests/upstream/{hv}.tsv"));
            }
        }
    }
    // Every struct layout needs a source; enum and flags members only when
    // they are upstream's (pvi's own `ShutdownReason` has no upstream).
    for name in structs
        .values
        .keys()
        .filter(|k| k.contains('.') || k.ends_with("#size"))
    {
        if !structs_listed.contains(name) {
            failures.push(format!("struct `{name}` is declared in the IDL but no tests/upstream list gives its source"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{checked} upstream values checked");
}
