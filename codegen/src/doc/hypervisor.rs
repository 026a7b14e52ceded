//! A page per hypervisor ABI: detection, calling convention, leaves,
//! feature bits, MSRs, constants, hypercalls, error codes, structures and
//! mappings.

use super::{cell, display, paragraph, versions, NOTICE};
use crate::ast::*;
use crate::fmt::{conv_text, path_text, string_text, type_text};
use crate::model::Model;

fn requires(r: &[Ident]) -> String {
    if r.is_empty() {
        "—".into()
    } else {
        r.iter()
            .map(|i| format!("`{}`", i.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A structure's heading, docs and field table.
pub(super) fn structure(model: &Model, s: &Struct) -> String {
    let mut out = format!(
        "### `struct {}` ({} bytes{})\n\n",
        s.name.name,
        s.size.value,
        if s.packed { ", packed" } else { "" }
    );
    out.push_str(&paragraph(&s.meta.docs));
    out.push_str("| offset | size | field | type | meaning |\n|---|---|---|---|---|\n");
    let mut fields: Vec<&Field> = s.fields.iter().collect();
    fields.sort_by_key(|f| f.offset.value);
    for f in fields {
        let size = model
            .layout(&f.ty)
            .map(|l| l.size.to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {size} | `{}` | `{}` | {} |\n",
            f.offset.value,
            f.name.name,
            type_text(&f.ty),
            cell(&f.meta.docs)
        ));
    }
    out.push('\n');
    out
}

/// The page's sections, filled item by item.
#[derive(Default)]
struct Sections {
    leaves: String,
    features: String,
    msrs: String,
    consts: String,
    hypercalls: String,
    errors: String,
    structs: String,
    maps: String,
}

impl Sections {
    /// Add `item`'s rows to its section.
    fn add(&mut self, model: &Model, hv: &str, item: &HvItem) {
        match item {
            HvItem::Leaf(l) => {
                let regs: Vec<String> = l
                    .registers
                    .iter()
                    .map(|r| format!("`{}`: `{}`", r.name.name, type_text(&r.ty)))
                    .collect();
                self.leaves.push_str(&format!(
                    "| `{}` | `{}` | {} {} | {} |\n",
                    l.name.name,
                    l.address.text,
                    cell(&l.meta.docs),
                    regs.join(", "),
                    versions(&l.meta)
                ));
            }
            HvItem::Features(f) => {
                self.features.push_str(&format!(
                    "### `{}` (`{}`)\n\n{}| bit | name | meaning | since |\n|---|---|---|---|\n",
                    f.name.name,
                    path_text(&f.register),
                    paragraph(&f.meta.docs)
                ));
                for b in &f.bits {
                    self.features.push_str(&format!(
                        "| {} | `{}` | {} | {} |\n",
                        b.value.value,
                        b.name.name,
                        cell(&b.meta.docs),
                        versions(&b.meta)
                    ));
                }
                self.features.push('\n');
            }
            HvItem::Msr(m) => self.msrs.push_str(&format!(
                "| `{}` | `{}` | {} | {} | {} | {} |\n",
                m.name.name,
                m.index.text,
                m.ty.as_ref()
                    .map(|t| format!("`{}`", type_text(t)))
                    .unwrap_or_else(|| "—".into()),
                requires(&m.requires),
                cell(&m.meta.docs),
                versions(&m.meta)
            )),
            HvItem::Const(c) => self.consts.push_str(&format!(
                "| `{}` | `{}` | `{}` | {} |\n",
                c.name.name,
                type_text(&c.ty),
                c.value.text,
                cell(&c.meta.docs)
            )),
            HvItem::Hypercall(h) => {
                let params: Vec<String> = h
                    .params
                    .iter()
                    .map(|p| format!("{}: {}", p.name.name, type_text(&p.ty)))
                    .collect();
                let result = match &h.result {
                    None => "—".into(),
                    Some(HcResult::Single(t)) => format!("`{}`", type_text(t)),
                    Some(HcResult::Named(r)) => format!(
                        "`({})`",
                        r.iter()
                            .map(|p| format!("{}: {}", p.name.name, type_text(&p.ty)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.hypercalls.push_str(&format!(
                    "| `{}` | `{}`{} | `({})` | {result} | {} | {} | {} |\n",
                    h.name.name,
                    h.number.text,
                    if h.fast { " fast" } else { "" },
                    params.join(", "),
                    requires(&h.requires),
                    cell(&h.meta.docs),
                    versions(&h.meta)
                ));
            }
            HvItem::Error(e) => self.errors.push_str(&format!(
                "| `{}` | `{}` | `{}` | {} |\n",
                e.name.name,
                e.code.text,
                e.kind.name,
                cell(&e.meta.docs)
            )),
            HvItem::Type(TypeDecl::Struct(st)) => self.structs.push_str(&structure(model, st)),
            HvItem::Type(_) | HvItem::Abi(_) | HvItem::Detect(_) | HvItem::Convention(_) => {}
            HvItem::Map(m) => {
                match &m.like {
                    Some(like) => self.maps.push_str(&format!(
                        "**`{}`**, as [{}](hv-{}.md) maps it:\n\n",
                        m.op.name, like.name, like.name
                    )),
                    None => self.maps.push_str(&format!("**`{}`**\n\n", m.op.name)),
                }
                let steps = model.chain(hv, &m.op.name).map_or(&[][..], |c| &c.steps);
                for step in steps {
                    self.maps
                        .push_str(&format!("{}. `{}`\n", step.number, step.text));
                }
                if let Some(form) = m.inline.first() {
                    self.maps.push_str(&format!(
                        "\nA patched site becomes `{}` (`inline`: no call unless it says `call {{op}}`).\n",
                        String::from_utf8_lossy(&form.value)
                    ));
                }
                self.maps.push('\n');
            }
        }
    }

    /// Append the sections that have rows to `s` (the file's top-level
    /// structures among the shared ones).
    fn render(mut self, model: &Model, hv: &Hypervisor, s: &mut String) {
        // Structures declared at the top level of this hypervisor's file.
        if let Some(file) = model.files.iter().find(|f| {
            f.items
                .iter()
                .any(|i| matches!(i, Item::Hypervisor(h) if h.name == hv.name))
        }) {
            for item in &file.items {
                if let Item::Type(TypeDecl::Struct(st)) = item {
                    self.structs.push_str(&structure(model, st));
                }
            }
        }
        let section = |title: &str, header: &str, body: &str| {
            if body.is_empty() {
                String::new()
            } else {
                format!("## {title}\n\n{header}{body}\n")
            }
        };
        s.push_str(&section(
            "CPUID leaves",
            "| name | leaf | meaning | since |\n|---|---|---|---|\n",
            &self.leaves,
        ));
        s.push_str(&section("Feature bits", "", &self.features));
        s.push_str(&section(
            "MSRs",
            "| name | index | holds | requires | meaning | since |\n|---|---|---|---|---|---|\n",
            &self.msrs,
        ));
        s.push_str(&section(
            "Constants",
            "| name | type | value | meaning |\n|---|---|---|---|\n",
            &self.consts,
        ));
        s.push_str(&section("Hypercalls", "| name | number | parameters | result | requires | meaning | since |\n|---|---|---|---|---|---|---|\n", &self.hypercalls));
        s.push_str(&section(
            "Error codes",
            "| name | code | pvi kind | meaning |\n|---|---|---|---|\n",
            &self.errors,
        ));
        s.push_str(&section("Shared structures", "", &self.structs));
        s.push_str(&section(
            "Mappings",
            "Ops not listed are served natively.\n\n",
            &self.maps,
        ));
    }
}

pub fn page(model: &Model, hv: &Hypervisor) -> String {
    let mut s = format!("# {} (`{}`)\n\n{NOTICE}\n", display(hv), hv.name.name);
    s.push_str(&paragraph(&hv.meta.docs));
    if let Some(file) = model.files.iter().find(|f| {
        f.items
            .iter()
            .any(|i| matches!(i, Item::Hypervisor(h) if h.name == hv.name))
    }) {
        s.push_str(&paragraph(&file.docs));
    }
    let items = &hv.items;
    let of = |f: fn(&HvItem) -> bool| items.iter().filter(move |i| f(i));
    s.push_str("## Detection\n\n");
    for item in of(|i| matches!(i, HvItem::Detect(_))) {
        if let HvItem::Detect(d) = item {
            for sig in &d.signatures {
                s.push_str(&format!("- CPUID signature {} in EBX, ECX, EDX of the base leaf, found by scanning 0x40000000–0x4000FF00 in steps of 0x100.\n", string_text(&sig.value).replace('|', "\\|")));
            }
            for p in &d.probes {
                s.push_str(&format!(
                    "- Probe: `{}`, when no CPUID signature is found.\n",
                    p.name
                ));
            }
            for e in &d.entries {
                s.push_str(&format!(
                    "- Entry: the kernel entered through the entry point its ELF note `{}` announces; CPUID alone never chooses it.\n",
                    e.name
                ));
            }
        }
    }
    s.push_str("\n## Calling convention\n\n");
    for item in of(|i| matches!(i, HvItem::Abi(_))) {
        if let HvItem::Abi(a) = item {
            s.push_str(&paragraph(&a.meta.docs));
        }
    }
    if let Some(abi) = hv.abi() {
        s.push_str(&format!(
            "The ABI of [{abi}](hv-{abi}.md): its constants, structures, hypercalls, error codes and calling convention, which generated code re-exports (`pvi_sdk::generated::{}` holds `pub use super::{abi}::*`). This page lists what differs: detection and the mappings.\n\n",
            hv.name.name,
            abi = abi.name
        ));
    }
    for item in of(|i| matches!(i, HvItem::Convention(_))) {
        if let HvItem::Convention(c) = item {
            s.push_str(&paragraph(&c.meta.docs));
            s.push_str("```text\n");
            for st in &c.stmts {
                s.push_str(&conv_text(st));
                s.push('\n');
            }
            s.push_str("```\n\n");
        }
    }
    let mut sections = Sections::default();
    for item in items {
        sections.add(model, &hv.name.name, item);
    }
    sections.render(model, hv, &mut s);
    s
}
