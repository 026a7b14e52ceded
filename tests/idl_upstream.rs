//! Every number in `idl/` against the sourced cross-check lists in
//! `tests/upstream/*.tsv` (NAME, VALUE as upstream writes it, SOURCE), in
//! both directions: each listed value matches the IDL, and each numbered
//! item of the IDL is listed.

use pvi_codegen::ast::*;
use pvi_codegen::Model;
use std::collections::BTreeMap;
use std::fs;

/// What a cross-check line says a name is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Listed {
    Number(i128),
    /// `BIT(n)` or `(1 << n)`: bit n.
    Bit(u32),
}

fn parse_value(v: &str) -> Option<Listed> {
    let v = v.trim();
    for bit in ["BIT(", "BIT_ULL("] {
        if let Some(n) = v.strip_prefix(bit).and_then(|r| r.strip_suffix(')')) {
            return n.trim().parse().ok().map(Listed::Bit);
        }
    }
    if let Some(n) = v.strip_prefix("bit ") {
        return n.trim().parse().ok().map(Listed::Bit);
    }
    if let Some(args) = v
        .strip_prefix("GENMASK_ULL(")
        .or_else(|| v.strip_prefix("GENMASK("))
        .and_then(|r| r.strip_suffix(')'))
    {
        let (high, low) = args.split_once(',')?;
        let (high, low): (u32, u32) = (high.trim().parse().ok()?, low.trim().parse().ok()?);
        let ones = (1i128 << (high - low + 1)) - 1;
        return Some(Listed::Number(ones << low));
    }
    if let Some(inner) = v.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        let Some((one, shift)) = inner.split_once("<<") else {
            return parse_value(inner);
        };
        if one.trim().trim_end_matches(['U', 'L']) == "1" {
            return shift.trim().parse().ok().map(Listed::Bit);
        }
        return None;
    }
    let (neg, body) = match v.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, v),
    };
    let body = body.trim_end_matches(['U', 'L', 'u', 'l']);
    let n = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => body.parse::<i128>().ok()?,
    };
    Some(Listed::Number(if neg { -n } else { n }))
}

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
            HvItem::Convention(_) | HvItem::Map(_) | HvItem::Type(_) => {}
        }
    }
    n
}

/// `outer.inner.field` (a nested C struct) is declared flat as
/// `outer.inner_field`: the IDL has no struct-typed fields.
fn flatten(name: &str) -> String {
    match name.split_once('.') {
        Some((outer, rest)) => format!("{outer}.{}", rest.replace('.', "_")),
        None => name.to_string(),
    }
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
    let dir = pvi_tests::root().join("tests/upstream");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut lists: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsv"))
        .collect();
    lists.sort();
    let mut hv_names: Vec<String> = model.hypervisors().map(|h| h.name.name.clone()).collect();
    hv_names.push("pvclock".into());
    for hv in &hv_names {
        assert!(
            lists.iter().any(|l| l.file_stem().unwrap() == hv.as_str()),
            "no cross-check list tests/upstream/{hv}.tsv"
        );
    }
    let structs = all_structs(&model);
    let mut structs_listed = std::collections::BTreeSet::new();
    for list in &lists {
        let hv = list.file_stem().unwrap().to_string_lossy().into_owned();
        let numbers = numbers_of(&model, &hv);
        let mut listed = std::collections::BTreeSet::new();
        for (no, line) in fs::read_to_string(list).unwrap().lines().enumerate() {
            let at = format!("{}:{}", list.file_name().unwrap().to_string_lossy(), no + 1);
            let cols: Vec<&str> = line.split('\t').collect();
            let [name, value, source] = cols[..] else {
                failures.push(format!("{at}: expected NAME<TAB>VALUE<TAB>SOURCE"));
                continue;
            };
            assert!(!source.trim().is_empty(), "{at}: no source");
            checked += 1;
            if name == "signature" {
                if !numbers.signature.contains(&unescape(value)) {
                    failures.push(format!("{at}: signature {value} is not declared"));
                }
                continue;
            }
            let key = match value.strip_prefix("size=") {
                Some(_) => format!("{name}#size"),
                None => flatten(name),
            };
            listed.insert(key.clone());
            let wanted = match value.strip_prefix("size=") {
                Some(size) => size.parse().ok().map(Listed::Number),
                None => parse_value(value),
            };
            let Some(wanted) = wanted else {
                failures.push(format!("{at}: cannot read value `{value}`"));
                continue;
            };
            if let Some(&bit) = numbers.bits.get(&key).or_else(|| structs.bits.get(&key)) {
                let ok = match wanted {
                    Listed::Bit(n) => n as i128 == bit,
                    Listed::Number(n) => n == bit,
                };
                if !ok {
                    failures.push(format!(
                        "{at}: feature `{name}` is bit {bit} in the IDL, upstream says {value}"
                    ));
                }
            } else if let Some(&v) = numbers
                .values
                .get(&key)
                .or_else(|| structs.values.get(&key))
            {
                structs_listed.insert(key.clone());
                let ok = match wanted {
                    Listed::Bit(n) => v == 1i128 << n,
                    Listed::Number(n) => v == n,
                };
                if !ok {
                    failures.push(format!(
                        "{at}: `{name}` is {v:#x} in the IDL, upstream says {value}"
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
                failures.push(format!(
                    "{hv}: `{name}` is declared in the IDL but has no sourced line in {}",
                    list.display()
                ));
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
