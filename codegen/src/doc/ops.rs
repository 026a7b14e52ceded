//! A page per op group: each op's native meaning and how every hypervisor
//! serves it.

use super::{display, paragraph, versions, NOTICE};
use crate::ast::*;
use crate::fmt::type_text;
use crate::ir::Lowering;
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
        let Some(resolved) = model.resolved_op(&op.name.name) else {
            continue;
        };
        let (hot, required) = (resolved.hot, resolved.required);
        let context = format!("`{}`", resolved.context.name());
        let errors = if resolved.fallible() {
            resolved
                .errors
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "—".to_string()
        };
        let native = match &resolved.lowering {
            Lowering::Asm(text) => format!("inline asm `{text}`"),
            Lowering::Routine { name, uses } => {
                let mut native = format!("routine `{name}`");
                if !uses.is_empty() {
                    let names: Vec<String> = uses
                        .iter()
                        .map(|u| match model.resolved_op(u) {
                            Some(f) => format!("[`{u}`](ops-{}.md)", f.group),
                            None => format!("`{u}`"),
                        })
                        .collect();
                    native.push_str(&format!(
                        ", reading the serving backend's {}",
                        names.join(", ")
                    ));
                }
                native
            }
        };
        s.push_str("| | |\n|---|---|\n");
        s.push_str(&format!("| native lowering | {native} |\n| context | {context} |\n| hot | {} |\n| required | {} |\n| errors | {errors} |\n| since | {} |\n\n", yes(hot), yes(required), versions(&op.meta)));
        if let Some(contract) = &resolved.safety {
            // The row the table above lacks: only an unsafe op has one.
            s.truncate(s.len() - 1);
            s.push_str(&format!(
                "| unsafe: the caller's contract | {contract} |\n\n"
            ));
        }
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
