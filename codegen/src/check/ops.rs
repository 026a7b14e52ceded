//! Ops: parameters, result, native lowering, hot flag, calling context and
//! error kinds.

use super::types::TypePlace;
use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::source::Span;
use std::collections::BTreeMap;

/// The calling contexts an op may declare.
pub const CONTEXTS: &[&str] = &crate::ir::Context::NAMES;

impl Checker {
    pub(super) fn check_ops(&mut self, files: &[File]) {
        for group in files.iter().flat_map(|f| &f.items).filter_map(|i| match i {
            Item::Group(g) => Some(g),
            _ => None,
        }) {
            for op in &group.ops {
                self.check_op(op);
            }
        }
    }

    fn check_op(&mut self, op: &Op) {
        let mut names = BTreeMap::new();
        for p in &op.params {
            self.unique(&mut names, &p.name, "parameter");
            if p.name.name == "ret" {
                self.error(
                    Diagnostic::new(
                        "reserved-name",
                        p.name.span,
                        "`ret` is reserved for the result in native asm",
                    )
                    .label("reserved")
                    .hint("rename the parameter"),
                );
            }
            self.check_type_ref(&p.ty, TypePlace::OpParam);
        }
        if let Some(r) = &op.result {
            self.check_type_ref(r, TypePlace::Value);
        }
        let mut seen: BTreeMap<&'static str, Span> = BTreeMap::new();
        let mut native: Option<&Native> = None;
        let mut hot = false;
        let mut context = false;
        for stmt in &op.stmts {
            let key = match stmt {
                OpStmt::Hot(_) => "hot",
                OpStmt::Required(_) => "required",
                OpStmt::Unsafe(..) => "unsafe",
                OpStmt::Context(..) => "context",
                OpStmt::Native(..) => "native",
                OpStmt::Errors(..) => "errors",
            };
            if let Some(first) = seen.get(key) {
                let first = *first;
                self.error(
                    Diagnostic::new(
                        "duplicate-key",
                        stmt.span(),
                        format!("`{key}` is given twice in op `{}`", op.name.name),
                    )
                    .label("second time")
                    .related(first, "first given here")
                    .hint("each statement may appear once per op"),
                );
                continue;
            }
            seen.insert(key, stmt.span());
            match stmt {
                OpStmt::Hot(_) => hot = true,
                OpStmt::Required(_) => {}
                OpStmt::Unsafe(contract, _) => self.check_contract(op, contract),
                OpStmt::Context(c, _) => {
                    context = true;
                    if !CONTEXTS.contains(&c.name.as_str()) {
                        let d = Diagnostic::new(
                            "unknown-context",
                            c.span,
                            format!("unknown calling context `{}`", c.name),
                        )
                        .label("not a context")
                        .suggest(
                            &c.name,
                            CONTEXTS,
                            format!("contexts are: {}", CONTEXTS.join(", ")),
                        );
                        self.error(d);
                    }
                }
                OpStmt::Native(n, _) => native = Some(n),
                OpStmt::Errors(kinds, _) => {
                    let mut listed = BTreeMap::new();
                    for k in kinds {
                        self.unique(&mut listed, k, "error kind");
                        self.check_error_kind(k);
                    }
                }
            }
        }
        if !context {
            self.error(
                Diagnostic::new(
                    "missing-context",
                    op.name.span,
                    format!("op `{}` does not say where it may be called", op.name.name),
                )
                .label("no `context`")
                .hint(format!(
                    "add `context any;` (or one of: {})",
                    CONTEXTS.join(", ")
                )),
            );
        }
        match native {
            None => self.error(
                Diagnostic::new("missing-native", op.name.span, format!("op `{}` has no native lowering", op.name.name))
                    .label("no `native`")
                    .hint("every op says what it does on bare metal: add `native asm \"…\";` or `native routine NAME;`"),
            ),
            Some(Native::Routine(r, _)) if hot => self.error(
                Diagnostic::new("hot-routine", r.span, format!("hot op `{}` lowers to a routine call", op.name.name))
                    .label("a call costs more than the instruction")
                    .hint("a hot op must cost no more than the native instruction: lower it to `native asm \"…\";`"),
            ),
            Some(Native::Asm(template)) => self.check_asm(op, template),
            Some(Native::Routine(_, uses)) => {
                let uses = uses.clone();
                self.check_routine_uses(op, &uses);
            }
        }
    }

    /// An `unsafe` op's contract says what its caller must uphold: an
    /// empty one would generate a `# Safety` section that says nothing.
    fn check_contract(&mut self, op: &Op, contract: &Str) {
        if String::from_utf8_lossy(&contract.value).trim().is_empty() {
            self.error(
                Diagnostic::new(
                    "empty-contract",
                    contract.span,
                    format!("unsafe op `{}` has an empty contract", op.name.name),
                )
                .label("says nothing")
                .hint("write what every caller must guarantee, e.g. `unsafe \"root is the physical address of a top-level page table that maps this code and its stack\";`"),
            );
        }
    }

    /// A routine's `uses` names ops of the same op set that it may call:
    /// ops that exist, are not the op itself, take no arguments, can be
    /// called wherever the op can, and do not in turn lower to a routine
    /// that uses ops (so no op set can call round in a circle).
    fn check_routine_uses(&mut self, op: &Op, uses: &[Ident]) {
        let mut listed = BTreeMap::new();
        for used in uses {
            if !self.unique(&mut listed, used, "used op") {
                continue;
            }
            let Some(target) = self.ops.get(&used.name).cloned() else {
                let known: Vec<String> = self.ops.keys().cloned().collect();
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                let d = Diagnostic::new(
                    "unknown-op",
                    used.span,
                    format!("`uses` names `{}`, which is not an op", used.name),
                )
                .label("no such op")
                .suggest(
                    &used.name,
                    &known,
                    "name an op of the interface whose value the routine reads, such as `clock_ns`",
                );
                self.error(d);
                continue;
            };
            let problem = if used.name == op.name.name {
                Some((
                    "the op itself",
                    "a routine that calls its own op never returns: remove it from `uses`"
                        .to_string(),
                ))
            } else if !target.params.is_empty() {
                Some((
                    "takes arguments",
                    format!(
                        "a routine reads values of its op set, such as the clock; `{}` takes arguments: \
                         call its native routine directly instead",
                        used.name
                    ),
                ))
            } else if !callable_from(&target, op) {
                Some((
                    "not callable here",
                    format!(
                        "`{}` has context `{}`, and `{}` may run in context `{}`: `uses` may name only \
                         ops of context `any` or `{}`; derive the value inside the routine from one of \
                         those (as `lapic_timer_oneshot` measures the TSC rate against `clock_ns`)",
                        used.name,
                        target.context().unwrap_or("any"),
                        op.name.name,
                        op.context().unwrap_or("any"),
                        op.context().unwrap_or("any")
                    ),
                ))
            } else if target
                .native()
                .is_some_and(|n| matches!(n, Native::Routine(_, u) if !u.is_empty()))
            {
                Some((
                    "itself uses ops",
                    format!(
                        "`{}`'s native routine uses ops too; a chain of `uses` could call round in a \
                         circle: read only ops whose native lowering uses nothing",
                        used.name
                    ),
                ))
            } else {
                None
            };
            if let Some((label, hint)) = problem {
                self.error(
                    Diagnostic::new(
                        "bad-routine-use",
                        used.span,
                        format!(
                            "the native routine of `{}` cannot use `{}`",
                            op.name.name, used.name
                        ),
                    )
                    .label(label)
                    .hint(hint),
                );
            }
        }
    }

    pub(super) fn check_error_kind(&mut self, k: &Ident) {
        if self.error_kinds.contains_key(&k.name) {
            return;
        }
        let known: Vec<&str> = self.error_kinds.keys().map(String::as_str).collect();
        let d = Diagnostic::new(
            "unknown-error-kind",
            k.span,
            format!("unknown error kind `{}`", k.name),
        )
        .label("not an error kind")
        .suggest(
            &k.name,
            &known,
            format!("error kinds are: {}", known.join(", ")),
        );
        self.error(d);
    }

    /// `{name}` operands must name parameters or `ret`, and every parameter
    /// and the result must be used.
    fn check_asm(&mut self, op: &Op, template: &Str) {
        let text = String::from_utf8_lossy(&template.value).into_owned();
        let mut used = Vec::new();
        let mut rest = text.as_str();
        let mut offset = 0;
        while let Some(open) = rest.find(['{', '}']) {
            let at = offset + open;
            let after = &rest[open + 1..];
            if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
                offset = at + 2;
                rest = &rest[open + 2..];
                continue;
            }
            if rest[open..].starts_with('}') {
                self.asm_error(
                    template,
                    at,
                    "unmatched `}` in asm template",
                    "write `}}` for a literal brace",
                );
                return;
            }
            let Some(close) = after.find('}') else {
                self.asm_error(
                    template,
                    at,
                    "unclosed `{` in asm template",
                    "operands are written `{name}`; a literal brace is `{{`",
                );
                return;
            };
            used.push((after[..close].to_string(), at));
            offset = at + close + 2;
            rest = &after[close + 1..];
        }
        for (name, at) in &used {
            let is_param = op.params.iter().any(|p| &p.name.name == name);
            if !(is_param || name == "ret" && op.result.is_some()) {
                let what = if name == "ret" {
                    "`{ret}` names the result, but the op has none".to_string()
                } else {
                    format!(
                        "asm operand `{{{name}}}` is not a parameter of `{}`",
                        op.name.name
                    )
                };
                self.asm_error(
                    template,
                    *at,
                    &what,
                    "operands are the op's parameters and `{ret}` for its result",
                );
            }
        }
        for p in &op.params {
            if !used.iter().any(|(n, _)| n == &p.name.name) {
                self.error(
                    Diagnostic::new(
                        "unused-operand",
                        p.name.span,
                        format!("parameter `{}` is not used by the native asm", p.name.name),
                    )
                    .label("never reaches the instruction")
                    .related(template.span, "native lowering")
                    .hint(format!(
                        "write `{{{}}}` where the instruction takes it",
                        p.name.name
                    )),
                );
            }
        }
        if op.result.is_some() && !used.iter().any(|(n, _)| n == "ret") {
            self.error(
                Diagnostic::new(
                    "unused-operand",
                    template.span,
                    format!(
                        "the native asm of `{}` never produces its result",
                        op.name.name
                    ),
                )
                .label("no `{ret}`")
                .hint("write `{ret}` where the instruction leaves the result"),
            );
        }
    }

    fn asm_error(&mut self, template: &Str, at: usize, message: &str, hint: &str) {
        // The template's text starts one byte after the opening quote; escapes
        // in asm templates are rare, so the offset is exact for plain text.
        let start = (template.span.start + 1 + at).min(template.span.end);
        self.error(
            Diagnostic::new(
                "bad-asm-template",
                Span::new(template.span.file, start, start + 1),
                message,
            )
            .label("here")
            .hint(hint),
        );
    }
}

/// Whether `target` may be called wherever `caller` may.
fn callable_from(target: &Op, caller: &Op) -> bool {
    let t = target.context().unwrap_or("any");
    t == "any" || t == caller.context().unwrap_or("any")
}
