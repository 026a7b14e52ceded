//! `pvi explain OP`: an op's native meaning, and how every hypervisor
//! serves it, step by step.

use crate::ast::*;
use crate::ir::{Lowering, Mechanism};
use crate::model::Model;
use std::fmt::Write;

/// The explanation of `op`, or None if the model has no such op.
pub fn explain(model: &Model, op_name: &str) -> Option<String> {
    let op = &model.resolved_op(op_name)?.syntax;
    let mut out = String::new();
    let params: Vec<String> = op
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name.name, type_name(&p.ty)))
        .collect();
    let result = op
        .result
        .as_ref()
        .map(|r| format!(" -> {}", type_name(r)))
        .unwrap_or_default();
    let _ = writeln!(out, "op {}({}){}", op.name.name, params.join(", "), result);
    let resolved = model.resolved_op(op_name)?;
    let since = resolved
        .since
        .clone()
        .unwrap_or_else(|| "the first interface version".to_string());
    let _ = writeln!(out, "  group {}, since {since}", resolved.group);
    let mut flags = Vec::new();
    if resolved.hot {
        flags.push("hot".to_string());
    }
    if resolved.required {
        flags.push("required on every hypervisor".to_string());
    }
    if let Some(contract) = &resolved.safety {
        flags.push(format!("unsafe (the caller must uphold: {contract})"));
    }
    flags.push(format!("context {}", resolved.context.name()));
    let native = match &resolved.lowering {
        Lowering::Asm(text) => format!("inline asm {}", crate::fmt::string_text(text.as_bytes())),
        Lowering::Routine { name, uses } if uses.is_empty() => format!("routine {name}"),
        Lowering::Routine { name, uses } => format!(
            "routine {name}, reading this backend's {} (its own chains, not bare metal's)",
            uses.join(", ")
        ),
    };
    if resolved.fallible() {
        flags.push(format!("errors: {}", resolved.errors.join(", ")));
    }
    let _ = writeln!(out, "  {}", flags.join(" · "));
    let _ = writeln!(out, "\nNative meaning:");
    for line in &op.meta.docs.lines {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "Native lowering: {native}");
    for hv in model.hypervisors() {
        let _ = write!(
            out,
            "\nOn {} ({}):",
            String::from_utf8_lossy(&hv.display.value),
            hv.name.name
        );
        match model.chain(&hv.name.name, &op.name.name) {
            None => {
                let _ = writeln!(out, " native (no mapping)");
            }
            Some(chain) => {
                let _ = writeln!(out);
                for step in &chain.steps {
                    let detail = step_detail(&step.mechanism);
                    let _ = writeln!(out, "  {}. {}{}", step.number, step.text, detail);
                }
            }
        }
    }
    Some(out)
}

/// Numbers behind the names in a step: what a reader looks up first.
fn step_detail(m: &Mechanism) -> String {
    let detail = match m {
        Mechanism::Hypercall {
            number,
            per_byte: Some(bytes),
            ..
        } => format!("hypercall {number}, once per byte of {bytes}"),
        Mechanism::Hypercall { number, .. } => format!("hypercall {number}"),
        Mechanism::MsrRead { index, .. } | Mechanism::MsrWrite { index, .. } => {
            format!("MSR {index}")
        }
        Mechanism::Shared {
            registered_by: Some((_, how)),
            ..
        } if !how.is_empty() => how.clone(),
        Mechanism::Shared {
            registered_by: None,
            ..
        } => "at an address the platform supplies".to_string(),
        Mechanism::Routine(_) => "the backend's own code: a `Steps` method".to_string(),
        Mechanism::Cpuid { address, .. } => format!("leaf {address}"),
        Mechanism::Shared { .. } | Mechanism::Nop | Mechanism::Native => return String::new(),
    };
    format!("   [{detail}]")
}

fn type_name(ty: &TypeRef) -> String {
    match ty {
        TypeRef::Named {
            name,
            unit: Some(u),
            ..
        } => format!("{} in {}", name.name, u.name),
        TypeRef::Named { name, .. } => name.name.clone(),
        TypeRef::Array { elem, len, .. } => format!("[{}; {}]", type_name(elem), len.text),
    }
}
