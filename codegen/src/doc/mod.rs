//! Markdown reference pages for the book, generated from the model: a page
//! per op group, a page per hypervisor ABI, the shared structures more than
//! one ABI uses, the op × hypervisor matrix, and the version history.

mod hypervisor;
mod matrix;
pub use matrix::MAX_OPS;
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
    format!("{}\n\n", link_sources(&docs.lines.join("\n")))
}

/// Doc lines on one line, for table cells.
pub(crate) fn cell(docs: &Docs) -> String {
    link_sources(&docs.lines.join(" ")).replace('|', "\\|")
}

/// Where a project's file `path` can be read upstream.
fn upstream_url(project: &str, path: &str) -> Option<String> {
    match project {
        "Linux" => Some(format!(
            "https://github.com/torvalds/linux/blob/master/{path}"
        )),
        "Xen" => Some(format!(
            "https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f={path};hb=HEAD"
        )),
        "open-vm-tools" => Some(format!(
            "https://github.com/vmware/open-vm-tools/blob/master/open-vm-tools/{path}"
        )),
        _ => None,
    }
}

/// The IDL's `Source: Project path[; path]…` notes with each path a link
/// to the upstream file, so a reader can check a constant where it is
/// defined. A path keeps the project named before it in the same note;
/// the note ends with its sentence.
pub(crate) fn link_sources(text: &str) -> String {
    let pieces: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    let core_of = |word: &str| -> (usize, bool) {
        let core = word.trim_end_matches(['.', ';', ',', ')']);
        (core.len(), word[core.len()..].contains('.'))
    };
    let mut out = String::with_capacity(text.len());
    let mut project: Option<&str> = None;
    let mut in_note = false;
    for (i, piece) in pieces.iter().enumerate() {
        let word = piece.trim_end_matches(char::is_whitespace);
        let space = &piece[word.len()..];
        if word == "Source:" {
            in_note = true;
            // A path may come before its project's name ("Source:
            // Documentation/…; Linux arch/…"): start with the first
            // project the note names.
            project = pieces[i + 1..]
                .iter()
                .map(|p| p.trim_end_matches(char::is_whitespace))
                .scan(false, |ended, w| {
                    if *ended {
                        return None;
                    }
                    let (len, end) = core_of(w);
                    *ended = end;
                    Some(&w[..len])
                })
                .find(|core| upstream_url(core, "").is_some());
            out.push_str(piece);
            continue;
        }
        let core = &word[..core_of(word).0];
        let tail = &word[core.len()..];
        let is_path = core.contains('/')
            && core
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
        match (in_note, upstream_url(core, "")) {
            (true, Some(_)) => {
                project = Some(core);
                out.push_str(piece);
            }
            (true, None) if is_path => match project.and_then(|p| upstream_url(p, core)) {
                Some(url) => out.push_str(&format!("[{core}]({url}){tail}{space}")),
                None => out.push_str(piece),
            },
            _ => out.push_str(piece),
        }
        if tail.contains('.') {
            in_note = false;
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::link_sources;

    #[test]
    fn source_notes_link_each_path_to_its_project() {
        let text = "Feature leaf. Source: Linux arch/x86/include/uapi/asm/kvm_para.h; Documentation/virt/kvm/x86/cpuid.rst. Not a/path.";
        assert_eq!(
            link_sources(text),
            "Feature leaf. Source: Linux [arch/x86/include/uapi/asm/kvm_para.h](https://github.com/torvalds/linux/blob/master/arch/x86/include/uapi/asm/kvm_para.h); [Documentation/virt/kvm/x86/cpuid.rst](https://github.com/torvalds/linux/blob/master/Documentation/virt/kvm/x86/cpuid.rst). Not a/path."
        );
        assert_eq!(
            link_sources("Source: Xen\nxen/include/public/xen.h."),
            "Source: Xen\n[xen/include/public/xen.h](https://xenbits.xen.org/gitweb/?p=xen.git;a=blob;f=xen/include/public/xen.h;hb=HEAD)."
        );
        assert_eq!(
            link_sources("Source: the TLFS, 6.0."),
            "Source: the TLFS, 6.0."
        );
        assert_eq!(
            link_sources("Source: Documentation/x.rst; Linux a/b.h. Then c/d."),
            "Source: [Documentation/x.rst](https://github.com/torvalds/linux/blob/master/Documentation/x.rst); Linux [a/b.h](https://github.com/torvalds/linux/blob/master/a/b.h). Then c/d."
        );
    }
}
