//! The version history page: which interface version each item appeared in
//! (`@since`), what is deprecated, and which items need a minimum version
//! of their hypervisor (`@hv_since`), so a guest knows what an old host
//! lacks.

use super::NOTICE;
use crate::ast::*;
use crate::model::Model;
use std::collections::BTreeMap;

/// One versioned item: where it lives, its kind and name, and the version.
struct Entry {
    place: String,
    kind: &'static str,
    name: String,
    version: String,
}

/// The first version argument of attribute `attr` on `meta`.
fn version_of(meta: &Meta, attr: &str) -> Option<String> {
    meta.attrs
        .iter()
        .filter(|a| a.name.name == attr)
        .find_map(|a| match a.args.first() {
            Some(AttrArg::Version(v)) => Some(v.text.clone()),
            _ => None,
        })
}

/// Every declaration with its place, kind, name and metadata.
fn items(model: &Model) -> Vec<(String, &'static str, String, &Meta)> {
    let mut out = Vec::new();
    for group in model.groups() {
        for op in &group.ops {
            out.push(("ops".into(), "op", op.name.name.clone(), &op.meta));
        }
    }
    for hv in model.hypervisors() {
        let place = super::display(hv);
        for item in &hv.items {
            match item {
                HvItem::Leaf(l) => out.push((place.clone(), "leaf", l.name.name.clone(), &l.meta)),
                HvItem::Msr(m) => out.push((place.clone(), "MSR", m.name.name.clone(), &m.meta)),
                HvItem::Const(c) => {
                    out.push((place.clone(), "constant", c.name.name.clone(), &c.meta))
                }
                HvItem::Hypercall(h) => {
                    out.push((place.clone(), "hypercall", h.name.name.clone(), &h.meta))
                }
                HvItem::Features(f) => {
                    for bit in &f.bits {
                        out.push((
                            place.clone(),
                            "feature bit",
                            bit.name.name.clone(),
                            &bit.meta,
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn entries(model: &Model, attr: &str) -> Vec<Entry> {
    items(model)
        .into_iter()
        .filter_map(|(place, kind, name, meta)| {
            version_of(meta, attr).map(|version| Entry {
                place,
                kind,
                name,
                version,
            })
        })
        .collect()
}

fn table(rows: &[Entry], first: &str) -> String {
    let mut s = format!("| {first} | kind | item |\n|---|---|---|\n");
    for e in rows {
        s.push_str(&format!("| {} | {} | `{}` |\n", e.version, e.kind, e.name));
    }
    s.push('\n');
    s
}

/// The page.
pub fn page(model: &Model) -> String {
    let mut s = format!("# Version history\n\n{NOTICE}\n");
    s.push_str(&format!(
        "The interface is `{}` {}. An item marked `@since` a version newer than the first the IDL names is compiled only with the SDK feature `interface-MAJOR-MINOR` of that version or a later one ([How bindings are generated](../codegen.md#interface-versions)); unmarked items have been there from the start.\n\n",
        model.interface.name.name, model.interface.version.text
    ));
    s.push_str("## Interface versions\n\n");
    let since = entries(model, "since");
    if since.is_empty() {
        s.push_str("No item carries `@since` yet.\n\n");
    } else {
        s.push_str(&table(&since, "since"));
    }
    let deprecated = entries(model, "deprecated");
    s.push_str("## Deprecated\n\n");
    if deprecated.is_empty() {
        s.push_str("Nothing is deprecated.\n\n");
    } else {
        s.push_str(&table(&deprecated, "deprecated in"));
    }
    s.push_str("## Hypervisor versions\n\n");
    s.push_str("Items a hypervisor offers only from a given version on (`@hv_since`). An older host lacks them: its feature bit is clear or the call answers \"not implemented\", and the chains fall back.\n\n");
    let mut by_hv: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for e in entries(model, "hv_since") {
        by_hv.entry(e.place.clone()).or_default().push(e);
    }
    if by_hv.is_empty() {
        s.push_str("No item carries `@hv_since`.\n\n");
    }
    for (hv, rows) in by_hv {
        s.push_str(&format!("### {hv}\n\n"));
        s.push_str(&table(&rows, "from version"));
    }
    s
}
