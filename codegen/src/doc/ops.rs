//! A page per op group: each op's native meaning and how every hypervisor
//! serves it.

use super::{display, paragraph, versions, NOTICE};
use crate::ast::*;
use crate::fmt::type_text;
use crate::model::Model;

pub fn page(model: &Model, group: &Group) -> String {
    let mut s = format!("# Ops: {}\n\n{NOTICE}\n", group.name.name);
    s.push_str(&paragraph(&group.meta.docs));
    for op in &group.ops {
        let params: Vec<String> = op
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name.name, type_text(&p.ty)))
            .collect();
        let result = op
            .result
            .as_ref()
            .map(|r| format!(" -> {}", type_text(r)))
            .unwrap_or_default();
        s.push_str(&format!(
            "## `{}({}){}`\n\n",
            op.name.name,
            params.join(", "),
            result
        ));
        s.push_str(&paragraph(&op.meta.docs));
        let mut context = "—".to_string();
        let mut errors = "—".to_string();
        let mut native = String::new();
        let (mut hot, mut required) = (false, false);
        for st in &op.stmts {
            match st {
                OpStmt::Hot(_) => hot = true,
                OpStmt::Required(_) => required = true,
                OpStmt::Context(c, _) => context = format!("`{}`", c.name),
                OpStmt::Errors(k, _) => {
                    errors = k
                        .iter()
                        .map(|i| format!("`{}`", i.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
                OpStmt::Native(Native::Asm(a), _) => {
                    native = format!("inline asm `{}`", String::from_utf8_lossy(&a.value))
                }
                OpStmt::Native(Native::Routine(r, uses), _) => {
                    native = format!("routine `{}`", r.name);
                    if !uses.is_empty() {
                        let names: Vec<String> = uses
                            .iter()
                            .map(|u| match model.ops().find(|f| f.op.name.name == u.name) {
                                Some(f) => format!("[`{}`](ops-{}.md)", u.name, f.group.name.name),
                                None => format!("`{}`", u.name),
                            })
                            .collect();
                        native.push_str(&format!(
                            ", reading the serving backend's {}",
                            names.join(", ")
                        ));
                    }
                }
            }
        }
        s.push_str("| | |\n|---|---|\n");
        s.push_str(&format!("| native lowering | {native} |\n| context | {context} |\n| hot | {} |\n| required | {} |\n| errors | {errors} |\n| since | {} |\n\n", yes(hot), yes(required), versions(&op.meta)));
        s.push_str("On each hypervisor, the steps are tried in order; a step whose feature is absent is skipped, and one that returns `unsupported` falls through to the next.\n\n");
        for hv in model.hypervisors() {
            s.push_str(&format!("**{}**", display(hv)));
            match model.chain(&hv.name.name, &op.name.name) {
                None => s.push_str(": native (not mapped).\n\n"),
                Some(chain) => {
                    s.push_str("\n\n");
                    for step in &chain.steps {
                        s.push_str(&format!("{}. `{}`\n", step.number, step.text));
                    }
                    s.push('\n');
                }
            }
        }
    }
    s
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
