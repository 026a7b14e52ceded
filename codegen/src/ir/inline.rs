//! A hot op's `inline "ASM";` form, resolved: the instructions a patched
//! site becomes on one hypervisor, with its placeholders bound. The
//! checker reports what does not resolve; the generator emits what does.
//!
//! Placeholders, as in `native asm`, are names in braces:
//! - `{STRUCT.FIELD}`: the field's address relative to GS, inside the
//!   calling CPU's hypervisor area, where the backend has the hypervisor
//!   keep its per-CPU `STRUCT` (Xen's `vcpu_info`, registered with
//!   `VCPUOP_register_vcpu_info`). It becomes `{area} + OFFSET`, `area`
//!   being the SDK's GS offset of the area (`pvi_sdk::cpu_area`).
//! - `{op}`, only as `call {op}`: the op itself, through the run-time
//!   dispatch, every register kept (the rare path, e.g. an event pending
//!   when `irq_enable` unmasks). The patcher moves the call with the
//!   site, so the generated text marks where the call ends (`7770:`).
//! - `{ret}` and the op's parameters: the registers of the C ABI a site's
//!   call uses (`rax`; `rdi`, `rsi`, …), as the native asm's are bound.

use crate::ast::{Op, Str, TypeDecl};
use std::collections::BTreeMap;

/// Bytes of the per-CPU area a backend may have the hypervisor use (one
/// 64-byte line; Xen's `vcpu_info` is 64 bytes on x86-64).
pub const CPU_AREA_SIZE: u64 = 64;

/// The local label the generated text puts right after its `call {op}`
/// (or first, when it has none), from which the patcher finds the call's
/// displacement.
pub const CALL_END_LABEL: &str = "7770";

/// The C ABI's argument registers, in order.
const ARG_REGISTERS: [&str; 6] = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];

/// An `inline` form with its placeholders bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inline {
    /// The assembly, Intel syntax, for a `global_asm!` with the operands
    /// `area` (a `const`) and, if [`Inline::calls_op`], `op` (a `sym`).
    pub text: String,
    /// The structure its `{STRUCT.FIELD}` placeholders name, if any.
    pub area_struct: Option<String>,
    /// Whether it has a `call {op}`.
    pub calls_op: bool,
}

/// Why a template does not resolve: where in its text, what, and how to
/// fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineError {
    /// Byte offset of the placeholder in the string's text.
    pub at: usize,
    /// Its length.
    pub len: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Resolve `template` (the string of `inline "…";`) for `op`, with the
/// interface's structures `types`.
pub fn resolve(
    template: &Str,
    op: &Op,
    types: &BTreeMap<String, TypeDecl>,
) -> Result<Inline, InlineError> {
    let text = String::from_utf8_lossy(&template.value).into_owned();
    let mut out = String::new();
    let mut area_struct: Option<String> = None;
    let mut calls_op = false;
    let mut rest = text.as_str();
    let mut at = 0;
    while let Some(open) = rest.find(['{', '}']) {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        at += open;
        if from.starts_with("{{") || from.starts_with("}}") {
            out.push_str(&from[..2]);
            rest = &from[2..];
            at += 2;
            continue;
        }
        let close = match (from.starts_with('{'), from.find('}')) {
            (true, Some(close)) => close,
            _ => {
                return Err(InlineError {
                    at,
                    len: 1,
                    message: "unmatched brace in the inline form".into(),
                    hint: "placeholders are `{NAME}`; write a literal brace as `{{` or `}}`".into(),
                })
            }
        };
        let name = &from[1..close];
        let error = |message: String, hint: &str| InlineError {
            at,
            len: close + 1,
            message,
            hint: hint.into(),
        };
        if name == "op" {
            if calls_op {
                return Err(error(
                    "`{op}` appears twice".into(),
                    "one `call {op}` takes the rare path; branch to it from every place that needs it",
                ));
            }
            if !out.trim_end().ends_with("call") || out.trim_end().len() == out.len() {
                return Err(error(
                    "`{op}` must be the target of a `call`".into(),
                    "write `call {op}`: the op, through the run-time dispatch, every register kept",
                ));
            }
            calls_op = true;
            out.push_str("{op}");
            out.push_str(&format!("; {CALL_END_LABEL}:"));
        } else if name == "ret" {
            if op.result.is_none() {
                return Err(error(
                    format!("`{}` has no result for `{{ret}}`", op.name.name),
                    "only an op with `-> TYPE` returns a value",
                ));
            }
            out.push_str("rax");
        } else if let Some(index) = op.params.iter().position(|p| p.name.name == name) {
            out.push_str(ARG_REGISTERS.get(index).copied().unwrap_or("rdi"));
        } else if let Some((structure, field)) = name.split_once('.') {
            let offset = area_field(structure, field, types).map_err(|(m, h)| error(m, &h))?;
            if let Some(other) = &area_struct {
                if other != structure {
                    return Err(error(
                        format!("the hypervisor area holds `{other}`, not `{structure}`"),
                        "every `{STRUCT.FIELD}` of one inline form names the structure the backend keeps in the CPU's hypervisor area",
                    ));
                }
            }
            area_struct = Some(structure.to_string());
            out.push_str(&format!("{{area}} + {offset}"));
        } else {
            let params: Vec<String> = op
                .params
                .iter()
                .map(|p| format!("`{{{}}}`", p.name.name))
                .collect();
            return Err(error(
                format!("`{{{name}}}` is not a placeholder of `{}`'s inline form", op.name.name),
                &format!(
                    "use `{{STRUCT.FIELD}}` (a field of the CPU's hypervisor area), `call {{op}}`, `{{ret}}`{}",
                    if params.is_empty() { String::new() } else { format!(" or {}", params.join(", ")) }
                ),
            ));
        }
        rest = &from[close + 1..];
        at += close + 1;
    }
    out.push_str(rest);
    if !calls_op {
        out = format!("{CALL_END_LABEL}: {out}");
    }
    Ok(Inline {
        text: out,
        area_struct,
        calls_op,
    })
}

/// The byte offset of `structure.field` in the hypervisor area.
fn area_field(
    structure: &str,
    field: &str,
    types: &BTreeMap<String, TypeDecl>,
) -> Result<i128, (String, String)> {
    let Some(TypeDecl::Struct(s)) = types.get(structure) else {
        return Err((
            format!("`{structure}` is not a declared struct"),
            "name the structure the backend has the hypervisor keep in the CPU's hypervisor area, declared with `struct NAME size N { … }`".into(),
        ));
    };
    if s.size.value > i128::from(CPU_AREA_SIZE) {
        return Err((
            format!(
                "`{structure}` is {} bytes: the CPU's hypervisor area holds {CPU_AREA_SIZE}",
                s.size.value
            ),
            "an inline form reaches only a structure that fits the area the kernel reserves at GS"
                .into(),
        ));
    }
    let Some(f) = s.fields.iter().find(|f| f.name.name == field) else {
        let known: Vec<&str> = s.fields.iter().map(|f| f.name.name.as_str()).collect();
        return Err((
            format!("struct `{structure}` has no field `{field}`"),
            format!("its fields are: {}", known.join(", ")),
        ));
    };
    Ok(f.offset.value)
}
