//! The op × hypervisor matrix: which mechanism serves each op where.

use super::{display, NOTICE};
use crate::ast::*;
use crate::ir::Chain;
use crate::model::Model;

/// The mechanisms of a fallback chain, `hypercall → native` (a mechanism
/// repeated by consecutive steps shown once).
fn chain(chain: Option<&Chain>) -> String {
    match chain {
        None => "native".into(),
        Some(c) => {
            let mut kinds: Vec<&str> = Vec::new();
            for step in &c.steps {
                let k = step.mechanism.keyword();
                if kinds.last() != Some(&k) {
                    kinds.push(k);
                }
            }
            kinds.join(" → ")
        }
    }
}

/// The most ops the interface may have: well under the cut Ingo Molnar
/// asked of paravirt_ops (about 100 hooks) and under issue 18's 60, so
/// that ops differing only by an argument are folded into one.
pub const MAX_OPS: usize = 48;

pub fn page(model: &Model) -> String {
    let hvs: Vec<&Hypervisor> = model.hypervisors().collect();
    let mut s = format!("# The op × hypervisor matrix\n\n{NOTICE}\nCoverage: every op on every backend, with the mechanism that serves it in fallback order (the generated chains of `pvi_sdk::generated::<hv>::Paravirt`; a test fails when a hypervisor has no backend or a mapped op no chain). `native` is the bare-metal lowering; every chain ends there. Ops marked **hot** must cost no more than their native instruction.\n\n");
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    s.push_str(&format!(
        "Size: {} in {}, for {}. pvi holds its interface to at most {MAX_OPS} ops (`tests/idl_interface.rs` fails beyond); Linux's `pv_ops` has about 80 slots, and in 2007 Ingo Molnar counted 1463 hook sites ([Xen PV: the kernel in ring 3](../xen-pv.md) counts the example kernel's call sites).\n\n",
        plural(model.ops().count(), "op", "ops"),
        plural(model.groups().count(), "group", "groups"),
        plural(hvs.len(), "hypervisor", "hypervisors")
    ));
    s.push_str("| group | op |");
    for hv in &hvs {
        s.push_str(&format!(" [{}](hv-{}.md) |", display(hv), hv.name.name));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(hvs.len()));
    s.push('\n');
    for found in model.ops() {
        let hot = if model
            .resolved_op(&found.op.name.name)
            .is_some_and(|o| o.hot)
        {
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
            let mapped = model.chain(&hv.name.name, &found.op.name.name);
            s.push_str(&format!(" {} |", chain(mapped)));
        }
        s.push('\n');
    }
    s
}
