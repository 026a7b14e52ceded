//! Mappings: each names a declared op, hypercall, MSR, leaf register,
//! structure field and feature bit; arguments match parameters in number,
//! type and unit; chains end in `native`; `required` ops are mapped.

use super::hypervisor::{path_text, Scope};
use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::model::unit_of;
use crate::parser::closest;
use crate::source::Span;
use std::collections::BTreeMap;

/// What an expression evaluates to, as far as the checker cares.
#[derive(Clone, Debug)]
enum Value {
    /// An integer literal: fits anywhere.
    Literal,
    /// A value with an optional unit and an optional enum type.
    Typed {
        unit: Option<String>,
        enum_ty: Option<String>,
    },
    /// A struct literal, passed by address.
    Struct(String),
    /// A `bytes` parameter's `.ptr`: a 64-bit guest address.
    Address,
}

impl Checker {
    pub(super) fn check_maps(&mut self, hv: &Hypervisor, scope: &Scope) {
        let mut mapped: BTreeMap<String, Span> = BTreeMap::new();
        for item in &hv.items {
            let HvItem::Map(map) = item else { continue };
            if !self.unique(&mut mapped, &map.op, "mapping of op") {
                continue;
            }
            let Some(op) = self.ops.get(&map.op.name).cloned() else {
                let known: Vec<&str> = self.ops.keys().map(String::as_str).collect();
                let d = Diagnostic::new(
                    "unknown-op",
                    map.op.span,
                    format!("`{}` is not an op of the interface", map.op.name),
                )
                .label("no such op")
                .suggest(
                    &map.op.name,
                    &known,
                    "ops are declared in `group` blocks; see `pvi explain`",
                );
                self.error(d);
                continue;
            };
            self.check_map(map, &op, scope);
        }
        self.check_routines(hv);
        self.check_inline_forms(hv);
        let required: Vec<Op> = self
            .ops
            .values()
            .filter(|op| op.stmts.iter().any(|s| matches!(s, OpStmt::Required(_))))
            .cloned()
            .collect();
        for op in required {
            if !mapped.contains_key(&op.name.name) {
                self.error(
                    Diagnostic::new(
                        "unmapped-required-op",
                        hv.name.span,
                        format!(
                            "hypervisor `{}` does not map the required op `{}`",
                            hv.name.name, op.name.name
                        ),
                    )
                    .label("missing `map`")
                    .related(op.name.span, "declared `required` here")
                    .hint(format!(
                        "add `map {} {{ …; native; }}` saying how this hypervisor serves it",
                        op.name.name
                    )),
                );
            }
        }
    }

    fn check_map(&mut self, map: &Map, op: &Op, scope: &Scope) {
        let mut ended: Option<Span> = None;
        for step in &map.steps {
            if let Some(native) = ended {
                self.error(
                    Diagnostic::new(
                        "unreachable-step",
                        step.span,
                        "this step comes after `native`, which always succeeds",
                    )
                    .label("never tried")
                    .related(native, "the chain ends here")
                    .hint("move `native;` to the end of the chain"),
                );
                break;
            }
            self.check_requires(&step.requires, scope);
            if let Some(guard) = &step.guard {
                self.check_guard(guard, op);
            }
            match &step.kind {
                StepKind::Native => ended = Some(step.span),
                StepKind::Nop => {
                    if op.result.is_some() {
                        self.error(
                            Diagnostic::new("nop-with-result", step.span, format!("`nop` cannot produce the result of `{}`", op.name.name))
                                .label("no value")
                                .hint("`nop` is for ops whose native effect the hypervisor makes unnecessary"),
                        );
                    }
                }
                StepKind::Hypercall(name, args) => self.check_hypercall_step(name, args, op, scope),
                StepKind::MsrWrite(name, value) => {
                    let Some(msr) = scope.msrs.get(&name.name) else {
                        self.unknown_in_scope(name, scope.msrs.keys(), "MSR", scope);
                        continue;
                    };
                    if let Some(v) = self.value_of(value, op, scope) {
                        let target = msr.ty.clone().unwrap_or_else(|| u64_type(name.span));
                        self.check_arg(
                            &v,
                            &target,
                            value.span(),
                            &format!("the value written to `{}`", name.name),
                        );
                    }
                }
                StepKind::MsrRead(name, as_unit) => {
                    let Some(msr) = scope.msrs.get(&name.name) else {
                        self.unknown_in_scope(name, scope.msrs.keys(), "MSR", scope);
                        continue;
                    };
                    let unit = msr.ty.as_ref().and_then(|t| unit_of(&self.types, t));
                    self.check_read(
                        unit,
                        as_unit.as_ref(),
                        op,
                        step.span,
                        &format!("MSR `{}`", name.name),
                    );
                }
                StepKind::Cpuid(path, as_unit) => {
                    let Some(leaf) = scope.leaves.get(&path.base.name) else {
                        self.unknown_in_scope(&path.base, scope.leaves.keys(), "CPUID leaf", scope);
                        continue;
                    };
                    let Some(reg) = &path.member else {
                        self.error(
                            Diagnostic::new(
                                "missing-register",
                                path.span,
                                "say which register of the leaf holds the value",
                            )
                            .label("which register?")
                            .hint(format!("write `{}.eax` (or ebx, ecx, edx)", path.base.name)),
                        );
                        continue;
                    };
                    let unit = leaf
                        .registers
                        .iter()
                        .find(|r| r.name.name == reg.name)
                        .and_then(|r| unit_of(&self.types, &r.ty));
                    self.check_read(
                        unit,
                        as_unit.as_ref(),
                        op,
                        step.span,
                        &format!("`{}`", path_text(path)),
                    );
                }
                StepKind::Shared(path, unit, source) => {
                    self.check_shared(path, unit.as_ref(), source, op, scope);
                }
                // Its name is checked with the hypervisor's other routines.
                StepKind::Routine(_) => {}
            }
        }
        if ended.is_none() {
            self.error(
                Diagnostic::new("chain-without-native", map.op.span, format!("the fallback chain for `{}` does not end in `native`", op.name.name))
                    .label("may run out of steps")
                    .hint("end the chain with `native;`: it is what runs when every paravirtual step is unavailable"),
            );
        }
    }

    /// `routine NAME` steps become `Steps` methods: one name, one method.
    fn check_routines(&mut self, hv: &Hypervisor) {
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for item in &hv.items {
            let HvItem::Map(map) = item else { continue };
            for step in &map.steps {
                let StepKind::Routine(name) = &step.kind else {
                    continue;
                };
                let taken = RESERVED_METHODS.contains(&name.name.as_str())
                    || name.name.rsplit_once("_step").is_some_and(|(_, n)| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                    });
                let snake = name
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if taken || !snake {
                    let why = if taken {
                        format!(
                            "`{}` is already a method of the backend's `Steps`",
                            name.name
                        )
                    } else {
                        format!("`{}` is not a snake_case method name", name.name)
                    };
                    self.error(
                        Diagnostic::new("bad-routine", name.span, why)
                            .label("cannot be the routine's method")
                            .hint(format!(
                                "name it after what it does, in snake_case, e.g. `{}_by_{}`",
                                map.op.name, hv.name.name
                            )),
                    );
                    continue;
                }
                if let Some(first) = seen.get(&name.name) {
                    self.error(
                        Diagnostic::new(
                            "duplicate-name",
                            name.span,
                            format!("routine `{}` is named twice", name.name),
                        )
                        .label("second use")
                        .related(*first, "first named here")
                        .hint("each `routine` step is its own `Steps` method: give each a name of its own"),
                    );
                    continue;
                }
                seen.insert(name.name.clone(), name.span);
            }
        }
    }

    fn check_guard(&mut self, guard: &Guard, op: &Op) {
        let Some(param) = op.params.iter().find(|p| p.name == guard.param) else {
            self.error(
                Diagnostic::new(
                    "unknown-name",
                    guard.param.span,
                    format!(
                        "`{}` is not a parameter of `{}`",
                        guard.param.name, op.name.name
                    ),
                )
                .label("no such parameter")
                .hint("a guard compares an enum parameter of the op with one of its variants"),
            );
            return;
        };
        let variants = match &param.ty {
            TypeRef::Named { name, .. } => match self.types.get(&name.name) {
                Some(TypeDecl::Enum(e)) => Some(
                    e.members
                        .iter()
                        .map(|m| m.name.name.clone())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            },
            TypeRef::Array { .. } => None,
        };
        let Some(variants) = variants else {
            self.error(
                Diagnostic::new(
                    "guard-not-enum",
                    guard.param.span,
                    format!("parameter `{}` is not an enum", guard.param.name),
                )
                .label("not an enum")
                .hint("`when` guards select on enum parameters"),
            );
            return;
        };
        if !variants.contains(&guard.variant.name) {
            let known: Vec<&str> = variants.iter().map(String::as_str).collect();
            let d = Diagnostic::new(
                "unknown-variant",
                guard.variant.span,
                format!(
                    "`{}` is not a variant of `{}`'s type",
                    guard.variant.name, guard.param.name
                ),
            )
            .label("no such variant")
            .suggest(
                &guard.variant.name,
                &known,
                format!("variants are: {}", known.join(", ")),
            );
            self.error(d);
        }
    }

    fn check_hypercall_step(&mut self, name: &Ident, args: &[Expr], op: &Op, scope: &Scope) {
        let Some(hc) = scope.hypercalls.get(&name.name) else {
            self.unknown_in_scope(name, scope.hypercalls.keys(), "hypercall", scope);
            return;
        };
        if args.len() != hc.params.len() {
            let span = match (args.first(), args.last()) {
                (Some(a), Some(b)) => Span::new(a.span().file, a.span().start, b.span().end),
                _ => name.span,
            };
            let names: Vec<String> = hc.params.iter().map(|p| p.name.name.clone()).collect();
            self.error(
                Diagnostic::new(
                    "wrong-arg-count",
                    span,
                    format!(
                        "`{}` takes {} argument(s), {} given",
                        name.name,
                        hc.params.len(),
                        args.len()
                    ),
                )
                .label("wrong number of arguments")
                .related(hc.name.span, "declared here")
                .hint(format!("its parameters are ({})", names.join(", "))),
            );
            return;
        }
        let mut each: Option<Span> = None;
        for (arg, param) in args.iter().zip(&hc.params) {
            let what = format!("parameter `{}` of `{}`", param.name.name, name.name);
            if let Expr::Each(bytes, span) = arg {
                if let Some(first) = each.replace(*span) {
                    self.error(
                        Diagnostic::new("each-twice", *span, "a step calls once per byte of one `bytes` parameter, not two")
                            .label("second `each`")
                            .related(first, "first `each` here")
                            .hint("pass the other buffer by address and length (`.ptr`, `.len`), or map the op to a `routine`"),
                    );
                }
                self.check_each(bytes, *span, &param.ty, op, &what);
                continue;
            }
            if let Expr::Member(base, member, span) = arg {
                if is_bytes_param(op, base) && member.name == "ptr" && !self.plain_u64(&param.ty) {
                    let target = match &param.ty {
                        TypeRef::Named { name, .. } => name.name.clone(),
                        TypeRef::Array { .. } => "an array".to_string(),
                    };
                    self.error(
                        Diagnostic::new(
                            "address-narrowed",
                            *span,
                            format!("{what} is `{target}`, but this is a 64-bit address"),
                        )
                        .label("an address, not a value")
                        .hint(format!("to pass the bytes of `{0}` themselves, one call per byte, write `each {0}`", base.name)),
                    );
                    continue;
                }
            }
            if let Expr::Name(n) = arg {
                if is_bytes_param(op, n) {
                    let by_address = self.plain_u64(&param.ty);
                    let hint = if by_address {
                        format!("this parameter takes an address: pass `{0}.ptr`, and `{0}.len` to the parameter that takes the length", n.name)
                    } else {
                        format!("this parameter takes one value: write `each {0}` to make the call once per byte of `{0}`", n.name)
                    };
                    self.error(
                        Diagnostic::new(
                            "bytes-by-value",
                            n.span,
                            format!("`{}` is a byte slice, but {what} is one value", n.name),
                        )
                        .label("a slice is two values")
                        .hint(hint),
                    );
                    continue;
                }
            }
            if let Some(v) = self.value_of(arg, op, scope) {
                self.check_arg(&v, &param.ty, arg.span(), &what);
            }
        }
    }

    /// `each BYTES` passed to a parameter of type `target`: a `bytes`
    /// parameter, byte by byte into a plain integer, in an op with no
    /// result (a step made of many calls produces no single value).
    fn check_each(&mut self, bytes: &Ident, span: Span, target: &TypeRef, op: &Op, what: &str) {
        if !is_bytes_param(op, bytes) {
            self.error(
                Diagnostic::new(
                    "bad-each",
                    span,
                    format!(
                        "`{}` is not a `bytes` parameter of `{}`",
                        bytes.name, op.name.name
                    ),
                )
                .label("nothing to go through byte by byte")
                .hint("`each` takes a parameter of type `bytes`; pass any other value as it is"),
            );
            return;
        }
        if op.result.is_some() {
            self.error(
                Diagnostic::new(
                    "each-with-result",
                    span,
                    format!("a step of one call per byte cannot produce the result of `{}`", op.name.name),
                )
                .label("many calls, one result")
                .hint("map the op to a `routine` of the backend, or pass the buffer by `.ptr` and `.len`"),
            );
        }
        let integer = self.integer_width(target).is_some()
            && unit_of(&self.types, target).is_none()
            && !matches!(self.type_of(target), Some(TypeDecl::Enum(_)));
        if !integer {
            self.type_mismatch(span, what, "a value", "one byte of a buffer");
        }
    }

    /// A plain 64-bit integer: where an address may go.
    fn plain_u64(&self, ty: &TypeRef) -> bool {
        matches!(self.integer_width(ty), Some(8))
            && unit_of(&self.types, ty).is_none()
            && !matches!(self.type_of(ty), Some(TypeDecl::Enum(_)))
    }

    fn type_of(&self, ty: &TypeRef) -> Option<&TypeDecl> {
        match ty {
            TypeRef::Named { name, .. } => self.types.get(&name.name),
            TypeRef::Array { .. } => None,
        }
    }

    fn check_shared(
        &mut self,
        path: &Path,
        as_unit: Option<&Ident>,
        source: &Source,
        op: &Op,
        scope: &Scope,
    ) {
        if let Source::Via(via) = source {
            if !scope.msrs.contains_key(&via.name) && !scope.hypercalls.contains_key(&via.name) {
                let hint = if via.name == "platform" {
                    "the platform supplies this structure's address: write `from platform`, not `via platform`"
                } else {
                    "name the MSR or hypercall through which the guest registers the shared structure, or write `from platform` if the platform supplies its address"
                };
                self.error(
                    Diagnostic::new(
                        "unknown-name",
                        via.span,
                        format!(
                            "`{}` is neither an MSR nor a hypercall of this hypervisor",
                            via.name
                        ),
                    )
                    .label("cannot register the structure")
                    .hint(hint),
                );
            }
        }
        let Some(TypeDecl::Struct(s)) = self.types.get(&path.base.name).cloned() else {
            self.error(
                Diagnostic::new(
                    "unknown-struct",
                    path.base.span,
                    format!("`{}` is not a declared struct", path.base.name),
                )
                .label("no such struct")
                .hint("declare the shared structure with `struct NAME size N { … }`"),
            );
            return;
        };
        let Some(field_name) = &path.member else {
            return;
        };
        let Some(field) = s.fields.iter().find(|f| f.name == *field_name) else {
            self.unknown_field(field_name, &s);
            return;
        };
        let unit = unit_of(&self.types, &field.ty);
        let what = format!("field `{}`", path_text(path));
        if matches!(source, Source::Platform(_)) && op.result.is_some() {
            // Generated code reads this field: it must be one aligned
            // integer, read with one volatile load.
            let size = crate::model::layout_of(&self.types, &field.ty).map(|l| l.size);
            let integer = self.integer_width(&field.ty).is_some();
            if !integer || size.is_none_or(|n| field.offset.value % i128::from(n as u32) != 0) {
                let why = if integer {
                    format!("{what} is not aligned to its size: one load cannot read it")
                } else {
                    format!("{what} is not an integer: generated code reads one value")
                };
                self.error(
                    Diagnostic::new("unreadable-field", path.span, why)
                        .label("not one aligned integer")
                        .hint("read a naturally aligned integer field, or leave out the field to have the backend read the structure in the step's `Steps` method"),
                );
                return;
            }
            self.check_read(unit, as_unit, op, path.span, &what);
        } else if op.result.is_some() && (unit.is_some() || as_unit.is_some()) {
            self.check_read(unit, as_unit, op, path.span, &what);
        }
    }

    fn unknown_field(&mut self, name: &Ident, s: &Struct) {
        let known: Vec<&str> = s.fields.iter().map(|f| f.name.name.as_str()).collect();
        let d = Diagnostic::new(
            "unknown-field",
            name.span,
            format!("struct `{}` has no field `{}`", s.name.name, name.name),
        )
        .label("no such field")
        .suggest(
            &name.name,
            &known,
            format!("its fields are: {}", known.join(", ")),
        );
        self.error(d);
    }

    /// A value read from somewhere (MSR, leaf register, field) becomes the
    /// op's result: units must agree, converted explicitly with `as`.
    fn check_read(
        &mut self,
        source: Option<String>,
        as_unit: Option<&Ident>,
        op: &Op,
        span: Span,
        what: &str,
    ) {
        let Some(result) = &op.result else {
            self.error(
                Diagnostic::new(
                    "read-without-result",
                    span,
                    format!(
                        "this step reads {what}, but `{}` returns nothing",
                        op.name.name
                    ),
                )
                .label("value goes nowhere")
                .hint("to write an MSR, use `msr NAME = VALUE`"),
            );
            return;
        };
        let want = unit_of(&self.types, result);
        let have = match as_unit {
            Some(u) => match self.convert(source.as_deref(), u, what) {
                Some(unit) => Some(unit),
                None => return,
            },
            None => source,
        };
        self.units_agree(
            have.as_deref(),
            want.as_deref(),
            span,
            what,
            &format!("the result of `{}`", op.name.name),
        );
    }

    /// `X as UNIT`: X needs a unit of the same dimension.
    fn convert(&mut self, from: Option<&str>, to: &Ident, what: &str) -> Option<String> {
        let Some(target) = self.units.get(&to.name).cloned() else {
            self.unknown_unit(to);
            return None;
        };
        let Some(from) = from else {
            self.error(
                Diagnostic::new("unit-mismatch", to.span, format!("{what} has no unit to convert from"))
                    .label("nothing to convert")
                    .hint("declare the unit where the value comes from (the MSR's, field's or register's type)"),
            );
            return None;
        };
        let source = self.units.get(from).cloned();
        if source
            .map(|s| s.dimension != target.dimension)
            .unwrap_or(true)
        {
            self.error(
                Diagnostic::new(
                    "unit-mismatch",
                    to.span,
                    format!("cannot convert {what} from `{from}` to `{}`", to.name),
                )
                .label("different dimensions")
                .hint("`as` converts between units of one dimension (ns and ns100, hz and khz)"),
            );
            return None;
        }
        Some(to.name.clone())
    }

    fn units_agree(
        &mut self,
        have: Option<&str>,
        want: Option<&str>,
        span: Span,
        what: &str,
        target: &str,
    ) {
        match (have, want) {
            (_, None) => {}
            (Some(h), Some(w)) if h == w => {}
            (None, Some(w)) => self.error(
                Diagnostic::new("unit-mismatch", span, format!("{what} has no unit, but {target} is in `{w}`"))
                    .label("unit missing")
                    .hint("give the value's source a unit (e.g. `u64 in ns`), so the checker can see it is right"),
            ),
            (Some(h), Some(w)) => {
                let same_dimension = match (self.units.get(h), self.units.get(w)) {
                    (Some(a), Some(b)) => a.dimension == b.dimension,
                    _ => false,
                };
                let hint = if same_dimension { format!("convert it explicitly: `… as {w}`") } else { format!("`{h}` and `{w}` measure different things") };
                self.error(Diagnostic::new("unit-mismatch", span, format!("{what} is in `{h}`, but {target} is in `{w}`")).label("unit mismatch").hint(hint));
            }
        }
    }

    /// The value of an argument expression, or None after reporting why it
    /// has none.
    fn value_of(&mut self, e: &Expr, op: &Op, scope: &Scope) -> Option<Value> {
        match e {
            Expr::Int(_) => Some(Value::Literal),
            Expr::Name(n) => {
                if n.name == "this_cpu" {
                    return Some(Value::Typed {
                        unit: None,
                        enum_ty: None,
                    });
                }
                if let Some(p) = op.params.iter().find(|p| p.name == *n) {
                    if matches!(&p.ty, TypeRef::Named { name, .. } if name.name == "bytes") {
                        self.error(
                            Diagnostic::new(
                                "bytes-by-value",
                                n.span,
                                format!("`{}` is a byte slice; pass its parts", n.name),
                            )
                            .label("a slice is two values")
                            .hint(format!("pass `{0}.ptr` (its address) or `{0}.len` (its length in bytes) where a `u64` goes; a hypercall step can also take it byte by byte, `each {0}`", n.name)),
                        );
                        return None;
                    }
                    // A parameter whose own type is wrong was reported
                    // already; checking its uses would only repeat that.
                    return self.resolves(&p.ty).then(|| self.typed(&p.ty));
                }
                if let Some(c) = scope.consts.get(&n.name) {
                    return Some(self.typed(&c.ty));
                }
                let mut known: Vec<&str> = op.params.iter().map(|p| p.name.name.as_str()).collect();
                known.extend(scope.consts.keys().map(String::as_str));
                known.push("this_cpu");
                let mut d = Diagnostic::new(
                    "unknown-name",
                    n.span,
                    format!(
                        "`{}` is not a parameter of `{}` nor a constant",
                        n.name, op.name.name
                    ),
                )
                .label("unknown value");
                d = if let Some(kind) = scope.kind_of(&n.name) {
                    d.hint(format!("`{}` is {kind}; arguments are op parameters, constants, integers or `this_cpu`", n.name))
                } else if let Some(best) = closest(&n.name, &known) {
                    d.hint(format!("did you mean `{best}`?"))
                } else {
                    d.hint("arguments are op parameters, constants, integers or `this_cpu`")
                };
                self.error(d);
                None
            }
            Expr::Member(base, member, span) => {
                let is_bytes = op.params.iter().any(|p| {
                    p.name == *base
                        && matches!(&p.ty, TypeRef::Named { name, .. } if name.name == "bytes")
                });
                if !is_bytes || !matches!(member.name.as_str(), "len" | "ptr") {
                    self.error(
                        Diagnostic::new(
                            "bad-member",
                            *span,
                            format!("`{}.{}` is not a value", base.name, member.name),
                        )
                        .label("unknown member")
                        .hint("only `bytes` parameters have members: `.ptr` and `.len`"),
                    );
                    return None;
                }
                Some(if member.name == "ptr" {
                    Value::Address
                } else {
                    Value::Typed {
                        unit: None,
                        enum_ty: None,
                    }
                })
            }
            Expr::Struct(name, fields, _) => {
                let Some(TypeDecl::Struct(s)) = self.types.get(&name.name).cloned() else {
                    self.error(
                        Diagnostic::new(
                            "unknown-struct",
                            name.span,
                            format!("`{}` is not a declared struct", name.name),
                        )
                        .label("no such struct")
                        .hint("a struct literal names a declared `struct`"),
                    );
                    return None;
                };
                let mut seen = BTreeMap::new();
                for (field_name, value) in fields {
                    self.unique(&mut seen, field_name, "field");
                    let Some(field) = s.fields.iter().find(|f| f.name == *field_name) else {
                        self.unknown_field(field_name, &s);
                        continue;
                    };
                    if let Some(v) = self.value_of(value, op, scope) {
                        self.check_arg(
                            &v,
                            &field.ty,
                            value.span(),
                            &format!("field `{}` of `{}`", field_name.name, s.name.name),
                        );
                    }
                }
                Some(Value::Struct(name.name.clone()))
            }
            Expr::Each(_, span) => {
                self.error(
                    Diagnostic::new("misplaced-each", *span, "`each` makes one call per byte: it goes only among a hypercall step's arguments")
                        .label("not a value")
                        .hint("pass the byte slice to the hypercall as `hypercall NAME(each PARAM)`; elsewhere use `.ptr` and `.len`"),
                );
                None
            }
            Expr::As(inner, unit, _) => {
                let v = self.value_of(inner, op, scope)?;
                let from = match &v {
                    Value::Typed { unit, .. } => unit.clone(),
                    Value::Literal | Value::Struct(_) | Value::Address => None,
                };
                let to = self.convert(from.as_deref(), unit, "this value")?;
                Some(Value::Typed {
                    unit: Some(to),
                    enum_ty: None,
                })
            }
        }
    }

    /// The size in bytes of the integer `ty` is, through newtypes; `None`
    /// for structs, arrays and unknown names.
    fn integer_width(&self, ty: &TypeRef) -> Option<u64> {
        let mut ty = ty.clone();
        for _ in 0..16 {
            let TypeRef::Named { name, .. } = &ty else {
                return None;
            };
            if let Some((size, _)) = crate::model::int_primitive(&name.name) {
                return Some(size);
            }
            match self.types.get(&name.name) {
                Some(TypeDecl::Newtype(n)) => ty = n.repr.clone(),
                _ => return None,
            }
        }
        None
    }

    fn resolves(&self, ty: &TypeRef) -> bool {
        match ty {
            TypeRef::Named { name, .. } => {
                crate::model::int_primitive(&name.name).is_some()
                    || name.name == "bool"
                    || self.types.contains_key(&name.name)
            }
            TypeRef::Array { .. } => false,
        }
    }

    fn typed(&self, ty: &TypeRef) -> Value {
        let enum_ty = match ty {
            TypeRef::Named { name, .. } => match self.types.get(&name.name) {
                Some(TypeDecl::Enum(_)) => Some(name.name.clone()),
                _ => None,
            },
            TypeRef::Array { .. } => None,
        };
        Value::Typed {
            unit: unit_of(&self.types, ty),
            enum_ty,
        }
    }

    /// Passing `value` where `target` is expected.
    fn check_arg(&mut self, value: &Value, target: &TypeRef, span: Span, what: &str) {
        let target_name = match target {
            TypeRef::Named { name, .. } => name.name.clone(),
            TypeRef::Array { .. } => String::new(),
        };
        let target_struct = matches!(self.types.get(&target_name), Some(TypeDecl::Struct(_)));
        let target_enum = matches!(self.types.get(&target_name), Some(TypeDecl::Enum(_)));
        match value {
            Value::Address => {
                // An address fits a plain 64-bit integer only: not a byte,
                // not a count of nanoseconds, not a struct.
                let plain_u64 = matches!(self.integer_width(target), Some(8))
                    && unit_of(&self.types, target).is_none()
                    && !target_enum;
                if !plain_u64 {
                    self.error(
                        Diagnostic::new(
                            "address-narrowed",
                            span,
                            format!("{what} is `{target_name}`, but this is a 64-bit address"),
                        )
                        .label("an address, not a value")
                        .hint("`.ptr` goes to a `u64` parameter that takes a buffer's address"),
                    );
                }
            }
            Value::Struct(s) => {
                if target_struct && *s != target_name {
                    self.type_mismatch(
                        span,
                        what,
                        &format!("a `{target_name}`"),
                        &format!("a `{s}`"),
                    );
                } else if !target_struct && unit_of(&self.types, target).is_some() {
                    self.type_mismatch(
                        span,
                        what,
                        &format!(
                            "a value in `{}`",
                            unit_of(&self.types, target).unwrap_or_default()
                        ),
                        &format!("the address of a `{s}`"),
                    );
                }
            }
            Value::Literal => {
                if target_struct {
                    self.type_mismatch(
                        span,
                        what,
                        &format!("a `{target_name}` struct literal"),
                        "an integer",
                    );
                }
            }
            Value::Typed { unit, enum_ty } => {
                if target_struct {
                    self.type_mismatch(
                        span,
                        what,
                        &format!("a `{target_name}` struct literal"),
                        "a plain value",
                    );
                    return;
                }
                match enum_ty {
                    Some(e) if *e != target_name => {
                        self.error(
                            Diagnostic::new("enum-mismatch", span, format!("{what} expects `{target_name}`, but this is a `{e}`"))
                                .label("different numbering")
                                .hint(format!("pvi's `{e}` values are not the hypervisor's: pass the hypervisor's constant in one step per variant with `when PARAM == VARIANT`")),
                        );
                        return;
                    }
                    None if target_enum => {
                        self.type_mismatch(
                            span,
                            what,
                            &format!("a `{target_name}`"),
                            "a plain value",
                        );
                        return;
                    }
                    _ => {}
                }
                let want = unit_of(&self.types, target);
                self.units_agree(
                    unit.as_deref(),
                    want.as_deref(),
                    span,
                    "this argument",
                    what,
                );
            }
        }
    }

    fn type_mismatch(&mut self, span: Span, what: &str, want: &str, have: &str) {
        self.error(
            Diagnostic::new(
                "type-mismatch",
                span,
                format!("{what} expects {want}, but this is {have}"),
            )
            .label("wrong kind of value")
            .hint("check the declaration of the hypercall, MSR or struct"),
        );
    }
}

/// The `Steps` methods every backend has: a `routine` cannot take their
/// names.
const RESERVED_METHODS: &[&str] = &[
    "features",
    "fell_back",
    "withdrawn",
    "served",
    "hypercalls",
    "this_cpu",
    "read_msr",
    "write_msr",
    "hv_version",
    "cpuid",
];

fn is_bytes_param(op: &Op, name: &Ident) -> bool {
    op.params.iter().any(|p| {
        p.name == *name && matches!(&p.ty, TypeRef::Named { name, .. } if name.name == "bytes")
    })
}

fn u64_type(span: Span) -> TypeRef {
    TypeRef::Named {
        name: Ident {
            name: "u64".into(),
            span,
        },
        unit: None,
        span,
    }
}
