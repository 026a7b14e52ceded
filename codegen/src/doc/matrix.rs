//! The op × hypervisor matrix: which mechanism serves each op where.

use super::{display, NOTICE};
use crate::ast::*;
use crate::model::Model;

/// The mechanisms of a fallback chain, `hypercall → native`.
fn chain(map: Option<&Map>) -> String {
    match map {
        None => "native".into(),
        Some(m) => {
            let mut kinds: Vec<&str> = Vec::new();
            for step in &m.steps {
                let k = step.kind.keyword();
                if kinds.last() != Some(&k) {
                    kinds.push(k);
                }
            }
            kinds.join(" → ")
        }
    }
}

pub fn page(model: &Model) -> String {
    let hvs: Vec<&Hypervisor> = model.hypervisors().collect();
    let mut s = format!("# The op × hypervisor matrix\n\n{NOTICE}\nCoverage: every op on every backend, with the mechanism that serves it in fallback order (the generated chains of `pvi_sdk::generated::<hv>::Paravirt`; a test fails when a hypervisor has no backend or a mapped op no chain). `native` is the bare-metal lowering; every chain ends there. Ops marked **hot** must cost no more than their native instruction.\n\n");
    s.push_str("| group | op |");
    for hv in &hvs {
        s.push_str(&format!(" [{}](hv-{}.md) |", display(hv), hv.name.name));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(hvs.len()));
    s.push('\n');
    for found in model.ops() {
        let hot = if found.op.stmts.iter().any(|st| matches!(st, OpStmt::Hot(_))) {
            " **hot**"
        } else {
            ""
        };
        s.push_str(&format!(
            "| [{g}](ops-{g}.md) | `{}`{hot} |",
            found.op.name.name,
            g = found.group.name.name
        ));
        for hv in &hvs {
            let map = hv.items.iter().find_map(|i| match i {
                HvItem::Map(m) if m.op.name == found.op.name.name => Some(m),
                _ => None,
            });
            s.push_str(&format!(" {} |", chain(map)));
        }
        s.push('\n');
    }
    s
}
