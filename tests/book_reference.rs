//! The generated reference covers the whole interface: every op on its
//! group's page, and every hypercall, MSR, CPUID leaf, constant and shared
//! structure of each hypervisor on that hypervisor's page. A generator
//! change that drops a kind of item fails here, not in a reader's search.

use pvi_codegen::ast::{HvItem, Item, TypeDecl};
use std::fs;

fn page(name: &str) -> String {
    let path = pvi_tests::root().join("book/src/reference").join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_op_hypercall_msr_leaf_constant_and_structure_is_in_the_reference() {
    let (_, model) = pvi_codegen::check_paths(&pvi_tests::idl_files()).unwrap();
    let model = model.unwrap_or_else(|_| panic!("idl/ does not check"));
    let all_pages: String = fs::read_dir(pvi_tests::root().join("book/src/reference"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let mut missing = Vec::new();
    let mut counted = 0;
    for file in &model.files {
        for item in &file.items {
            match item {
                Item::Group(group) => {
                    let text = page(&format!("ops-{}.md", group.name.name));
                    for op in &group.ops {
                        counted += 1;
                        if !text.contains(&format!("## `{}(", op.name.name)) {
                            missing
                                .push(format!("op {} (ops-{}.md)", op.name.name, group.name.name));
                        }
                    }
                }
                Item::Type(TypeDecl::Struct(s)) => {
                    counted += 1;
                    if !all_pages.contains(&format!("`struct {}`", s.name.name)) {
                        missing.push(format!("struct {} (any reference page)", s.name.name));
                    }
                }
                Item::Hypervisor(hv) => {
                    let file = format!("hv-{}.md", hv.name.name);
                    let text = page(&file);
                    for item in &hv.items {
                        let wanted = match item {
                            HvItem::Hypercall(h) => format!("`{}`", h.name.name),
                            HvItem::Msr(m) => format!("`{}`", m.name.name),
                            HvItem::Leaf(l) => format!("`{}`", l.name.name),
                            HvItem::Const(c) => format!("`{}`", c.name.name),
                            HvItem::Type(TypeDecl::Struct(s)) => {
                                format!("`struct {}`", s.name.name)
                            }
                            _ => continue,
                        };
                        counted += 1;
                        if !text.contains(&wanted) {
                            missing.push(format!("{wanted} ({file})"));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing from the reference:\n{}",
        missing.join("\n")
    );
    assert!(counted > 250, "only {counted} items checked: is idl/ read?");
}

/// The compatibility chapter's table lists every rule `pvi compat` has,
/// with its class.
#[test]
fn every_compat_rule_is_in_the_book() {
    let text = fs::read_to_string(pvi_tests::root().join("book/src/compat.md")).unwrap();
    let missing: Vec<String> = pvi_codegen::compat::RULES
        .iter()
        .map(|(rule, class, _)| format!("| `{rule}` | {} |", class.word()))
        .filter(|row| !text.contains(row.as_str()))
        .collect();
    assert!(missing.is_empty(), "book/src/compat.md lacks: {missing:?}");
}
