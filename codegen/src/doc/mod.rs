//! Markdown reference pages for the book, generated from the model: a page
//! per op group, a page per hypervisor ABI, the shared structures more than
//! one ABI uses, the op × hypervisor matrix, and the version history.

mod hypervisor;
mod matrix;
mod ops;
mod versions;

use crate::ast::*;
use crate::gen::Output;
use crate::model::Model;

/// Where the reference pages live, relative to the workspace root.
pub const DOC_DIR: &str = "book/src/reference";

const NOTICE: &str =
    "> Generated from `idl/` by `cargo xtask codegen`. Do not edit: change the IDL.\n";

/// Every reference page.
pub fn reference(model: &Model) -> Vec<Output> {
    let mut pages = vec![
        Output {
            name: "index.md".into(),
            text: index(model),
        },
        Output {
            name: "matrix.md".into(),
            text: matrix::page(model),
        },
    ];
    for group in model.groups() {
        pages.push(Output {
            name: format!("ops-{}.md", group.name.name),
            text: ops::page(model, group),
        });
    }
    for hv in model.hypervisors() {
        pages.push(Output {
            name: format!("hv-{}.md", hv.name.name),
            text: hypervisor::page(model, hv),
        });
    }
    pages.push(Output {
        name: "structures.md".into(),
        text: structures(model),
    });
    pages.push(Output {
        name: "versions.md".into(),
        text: versions::page(model),
    });
    pages
}

/// The heading of `book/src/SUMMARY.md` under which the reference pages
/// are listed: everything after it is generated.
pub const SUMMARY_HEADING: &str = "# Reference (generated from idl/)";

/// `current` (the book's `SUMMARY.md`) with the list after
/// [`SUMMARY_HEADING`] made from the model, so a new op group or
/// hypervisor's page is in the book without a hand edit; `None` if the
/// heading is missing.
pub fn summary(model: &Model, current: &str) -> Option<String> {
    let at = current.find(SUMMARY_HEADING)? + SUMMARY_HEADING.len();
    let mut s = format!(
        "{}\n\n- [Overview](reference/index.md)\n- [The op × hypervisor matrix](reference/matrix.md)\n",
        &current[..at]
    );
    for g in model.groups() {
        s.push_str(&format!(
            "- [Ops: {0}](reference/ops-{0}.md)\n",
            g.name.name
        ));
    }
    for hv in model.hypervisors() {
        s.push_str(&format!(
            "- [{}](reference/hv-{}.md)\n",
            display(hv),
            hv.name.name
        ));
    }
    s.push_str("- [Shared structures](reference/structures.md)\n- [Version history](reference/versions.md)\n");
    Some(s)
}

/// The shared structures declared outside any hypervisor block (the
/// pvclock records KVM and Xen both use), with their files' docs.
fn structures(model: &Model) -> String {
    let mut s = format!(
        "# Shared structures

{NOTICE}
"
    );
    s.push_str(
        "Layouts declared once, outside any hypervisor, because more than one ABI uses them.\n\n",
    );
    // A hypervisor's file shows its own structures on its page.
    let without_hypervisor = model
        .files
        .iter()
        .filter(|f| !f.items.iter().any(|i| matches!(i, Item::Hypervisor(_))));
    for file in without_hypervisor {
        let structs: Vec<&Struct> = file
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Type(TypeDecl::Struct(st)) => Some(st),
                _ => None,
            })
            .collect();
        if structs.is_empty() {
            continue;
        }
        s.push_str(&paragraph(&file.docs));
        for st in structs {
            s.push_str(&hypervisor::structure(model, st));
        }
    }
    s
}

fn index(model: &Model) -> String {
    let mut s = format!(
        "# Reference: interface `{}` {}\n\n{NOTICE}\n",
        model.interface.name.name, model.interface.version.text
    );
    s.push_str(&paragraph(&model.interface.meta.docs));
    s.push_str("## Ops by group\n\n");
    for g in model.groups() {
        s.push_str(&format!(
            "- [{}](ops-{}.md): {} ({} ops)\n",
            g.name.name,
            g.name.name,
            g.meta.docs.summary(),
            g.ops.len()
        ));
    }
    s.push_str("\n## Hypervisor ABIs\n\n");
    for hv in model.hypervisors() {
        s.push_str(&format!("- [{}](hv-{}.md)\n", display(hv), hv.name.name));
    }
    s.push_str("\n## Across hypervisors\n\n- [The op × hypervisor matrix](matrix.md)\n- [Shared structures](structures.md)\n- [Version history](versions.md)\n");
    s
}

/// A hypervisor's display name.
pub(crate) fn display(hv: &Hypervisor) -> String {
    String::from_utf8_lossy(&hv.display.value).into_owned()
}

/// Doc lines as a markdown paragraph, followed by a blank line.
pub(crate) fn paragraph(docs: &Docs) -> String {
    if docs.lines.is_empty() {
        return String::new();
    }
    format!("{}\n\n", docs.lines.join("\n"))
}

/// Doc lines on one line, for table cells.
pub(crate) fn cell(docs: &Docs) -> String {
    docs.lines.join(" ").replace('|', "\\|")
}

/// `since` and `hv_since` of an item, for tables.
pub(crate) fn versions(meta: &Meta) -> String {
    let mut out = Vec::new();
    for a in &meta.attrs {
        let v = match a.args.first() {
            Some(AttrArg::Version(v)) => v.text.clone(),
            _ => continue,
        };
        match a.name.name.as_str() {
            "since" => out.push(format!("pvi {v}")),
            "hv_since" => out.push(v),
            "deprecated" => out.push(format!("deprecated {v}")),
            _ => {}
        }
    }
    if out.is_empty() {
        "—".into()
    } else {
        out.join(", ")
    }
}
