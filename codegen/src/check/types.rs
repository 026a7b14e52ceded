//! Units, type references, and the declared types: newtypes, flags, enums
//! and the layouts of shared structures.

use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::model::{fits, int_primitive, layout_of, UnitInfo};
use std::collections::BTreeMap;

/// Where a type reference appears; each place allows different types.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TypePlace {
    /// An op parameter: `bytes` allowed, no arrays.
    OpParam,
    /// A struct field: arrays allowed.
    Field,
    /// Anything else: op results, hypercall parameters, MSR values, consts.
    Value,
}

impl Checker {
    pub(super) fn check_types(&mut self) {
        self.resolve_units();
        let types: Vec<TypeDecl> = self.types.values().cloned().collect();
        for t in &types {
            match t {
                TypeDecl::Newtype(n) => self.check_newtype(n),
                TypeDecl::Flags(e) => self.check_enumeration(e, true),
                TypeDecl::Enum(e) => self.check_enumeration(e, false),
                TypeDecl::Struct(s) => self.check_struct(s),
            }
        }
    }

    fn resolve_units(&mut self) {
        let decls: Vec<UnitDecl> = self.unit_decls.values().cloned().collect();
        for u in &decls {
            let mut factor: u128 = 1;
            let mut current = u.clone();
            let mut steps = 0;
            let resolved = loop {
                match &current.scale {
                    None => break Some(current.name.name.clone()),
                    Some((f, base)) => {
                        if f.value <= 0 {
                            self.error(
                                Diagnostic::new(
                                    "bad-unit-factor",
                                    f.span,
                                    "a unit's factor must be a positive integer",
                                )
                                .label("not positive")
                                .hint("write `unit NAME = FACTOR BASE;` with FACTOR ≥ 1"),
                            );
                            break None;
                        }
                        factor = factor.saturating_mul(f.value as u128);
                        let Some(next) = self.unit_decls.get(&base.name).cloned() else {
                            if current.name == u.name {
                                self.unknown_unit(base);
                            }
                            break None;
                        };
                        steps += 1;
                        if steps > self.unit_decls.len() {
                            self.error(
                                Diagnostic::new(
                                    "unit-cycle",
                                    u.name.span,
                                    format!("unit `{}` is defined in terms of itself", u.name.name),
                                )
                                .label("circular definition")
                                .hint(
                                    "one unit of each dimension must be declared as `unit NAME;`",
                                ),
                            );
                            break None;
                        }
                        current = next;
                    }
                }
            };
            if let Some(dimension) = resolved {
                self.units
                    .insert(u.name.name.clone(), UnitInfo { dimension, factor });
            }
        }
    }

    pub(super) fn unknown_unit(&mut self, unit: &Ident) {
        let known: Vec<&str> = self.unit_decls.keys().map(String::as_str).collect();
        let d = Diagnostic::new(
            "unknown-unit",
            unit.span,
            format!("unknown unit `{}`", unit.name),
        )
        .label("no such unit")
        .suggest(
            &unit.name,
            &known,
            format!(
                "declare it with `unit {};` or use one of: {}",
                unit.name,
                known.join(", ")
            ),
        );
        self.error(d);
    }

    /// Check that `ty` names known types and units and is allowed at `place`.
    /// Returns false if it does not resolve.
    pub(super) fn check_type_ref(&mut self, ty: &TypeRef, place: TypePlace) -> bool {
        match ty {
            TypeRef::Array { elem, len, span } => {
                if place != TypePlace::Field {
                    self.error(
                        Diagnostic::new(
                            "misplaced-array",
                            *span,
                            "arrays are allowed only in struct fields",
                        )
                        .label("array here")
                        .hint("pass a struct by address, or a `bytes` slice to an op"),
                    );
                    return false;
                }
                if len.value <= 0 {
                    self.error(
                        Diagnostic::new(
                            "bad-array-length",
                            len.span,
                            "an array needs at least one element",
                        )
                        .label("empty array")
                        .hint("remove the field, or give it a positive length"),
                    );
                    return false;
                }
                self.check_type_ref(elem, place)
            }
            TypeRef::Named { name, unit, .. } => {
                let n = name.name.as_str();
                let primitive = int_primitive(n).is_some();
                if n == "bytes" && place != TypePlace::OpParam {
                    self.error(
                        Diagnostic::new(
                            "misplaced-bytes",
                            name.span,
                            "`bytes` is allowed only as an op parameter",
                        )
                        .label("byte slice here")
                        .hint("a hypercall receives the slice as `PARAM.ptr` and `PARAM.len`"),
                    );
                    return false;
                }
                if !primitive && !matches!(n, "bool" | "bytes") && !self.types.contains_key(n) {
                    let mut known: Vec<&str> = self.types.keys().map(String::as_str).collect();
                    known.extend([
                        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "bool", "bytes",
                    ]);
                    let mut d =
                        Diagnostic::new("unknown-type", name.span, format!("unknown type `{n}`"))
                            .label("no such type");
                    d = d.suggest(n, &known, "declare it with `newtype`, `flags`, `enum` or `struct`, or use a primitive");
                    self.error(d);
                    return false;
                }
                if let Some(u) = unit {
                    if !primitive {
                        self.error(
                            Diagnostic::new(
                                "unit-on-non-integer",
                                u.span,
                                format!("only integer primitives take a unit; `{n}` is not one"),
                            )
                            .label("unit not allowed here")
                            .hint("give the unit to the newtype's declaration instead"),
                        );
                        return false;
                    }
                    if !self.unit_decls.contains_key(&u.name) {
                        self.unknown_unit(u);
                        return false;
                    }
                }
                true
            }
        }
    }

    fn check_newtype(&mut self, n: &Newtype) {
        if !self.check_type_ref(&n.repr, TypePlace::Value) {
            return;
        }
        let ok =
            matches!(&n.repr, TypeRef::Named { name, .. } if int_primitive(&name.name).is_some());
        if !ok {
            self.error(
                Diagnostic::new(
                    "bad-newtype",
                    n.repr.span(),
                    format!("newtype `{}` must wrap an integer primitive", n.name.name),
                )
                .label("not an integer primitive")
                .hint("write e.g. `newtype Nanos: u64 in ns;`"),
            );
        }
    }

    fn check_enumeration(&mut self, e: &Enumeration, is_flags: bool) {
        let what = if is_flags { "flags" } else { "enum" };
        let Some((size, signed)) = int_primitive(&e.repr.name) else {
            self.error(
                Diagnostic::new(
                    "bad-repr",
                    e.repr.span,
                    format!(
                        "{what} `{}` must be stored in an integer primitive",
                        e.name.name
                    ),
                )
                .label("not an integer primitive")
                .hint("use u8, u16, u32 or u64"),
            );
            return;
        };
        let mut names = BTreeMap::new();
        let mut values: BTreeMap<i128, &Member> = BTreeMap::new();
        for m in &e.members {
            self.unique(
                &mut names,
                &m.name,
                if is_flags { "flag" } else { "variant" },
            );
            if is_flags {
                let bits = (size * 8) as i128;
                if !(0..bits).contains(&m.value.value) {
                    self.error(
                        Diagnostic::new(
                            "bit-out-of-range",
                            m.value.span,
                            format!("bit {} does not exist in a {}", m.value.text, e.repr.name),
                        )
                        .label(format!("must be 0..{}", bits - 1))
                        .hint("flags members are bit positions, not masks"),
                    );
                    continue;
                }
            } else if !fits(m.value.value, size, signed) {
                self.error(
                    Diagnostic::new(
                        "value-out-of-range",
                        m.value.span,
                        format!("{} does not fit in {}", m.value.text, e.repr.name),
                    )
                    .label("out of range")
                    .hint(format!(
                        "choose a wider type than {} or a smaller value",
                        e.repr.name
                    )),
                );
                continue;
            }
            if let Some(first) = values.get(&m.value.value) {
                let what = if is_flags { "bit" } else { "value" };
                self.error(
                    Diagnostic::new(
                        "duplicate-number",
                        m.value.span,
                        format!(
                            "{what} {} is used by `{}` already",
                            m.value.text, first.name.name
                        ),
                    )
                    .label("used twice")
                    .related(first.value.span, "first used here")
                    .hint(format!("each member needs its own {what}")),
                );
            } else {
                values.insert(m.value.value, m);
            }
        }
    }

    fn check_struct(&mut self, s: &Struct) {
        let mut names = BTreeMap::new();
        let mut placed: Vec<(u64, u64, &Field)> = Vec::new();
        let mut struct_align = 1;
        for f in &s.fields {
            self.unique(&mut names, &f.name, "field");
            if !self.check_type_ref(&f.ty, TypePlace::Field) {
                continue;
            }
            let Some(layout) = layout_of(&self.types, &f.ty) else {
                self.error(
                    Diagnostic::new(
                        "bad-field-type",
                        f.ty.span(),
                        "this field's size cannot be computed",
                    )
                    .label("no layout")
                    .hint("structs may not contain themselves"),
                );
                continue;
            };
            let Ok(offset) = u64::try_from(f.offset.value) else {
                self.error(
                    Diagnostic::new(
                        "bad-offset",
                        f.offset.span,
                        "a field offset cannot be negative",
                    )
                    .label("negative")
                    .hint("offsets count bytes from the start of the struct"),
                );
                continue;
            };
            if !s.packed {
                struct_align = struct_align.max(layout.align);
                if offset % layout.align != 0 {
                    self.error(
                        Diagnostic::new("misaligned-field", f.offset.span, format!("field `{}` at offset {offset} is not aligned to {} bytes", f.name.name, layout.align))
                            .label(format!("offset must be a multiple of {}", layout.align))
                            .hint("fix the offset, or declare the struct `packed` if the upstream layout really is unaligned"),
                    );
                }
            }
            placed.push((offset, offset.saturating_add(layout.size), f));
        }
        placed.sort_by_key(|(start, _, _)| *start);
        for pair in placed.windows(2) {
            let (_, end_a, a) = pair[0];
            let (start_b, _, b) = pair[1];
            if start_b < end_a {
                self.error(
                    Diagnostic::new("overlapping-fields", b.offset.span, format!("field `{}` overlaps `{}`, which ends at offset {end_a}", b.name.name, a.name.name))
                        .label("starts inside the previous field")
                        .related(a.span, "this field")
                        .hint("fields must not share bytes; check the offsets against the upstream header"),
                );
            }
        }
        let Ok(size) = u64::try_from(s.size.value) else {
            self.error(
                Diagnostic::new("bad-size", s.size.span, "a struct size cannot be negative")
                    .label("negative")
                    .hint("write the size in bytes"),
            );
            return;
        };
        if let Some((_, end, f)) = placed.iter().max_by_key(|(_, end, _)| *end) {
            if *end > size {
                self.error(
                    Diagnostic::new(
                        "field-past-end",
                        f.span,
                        format!(
                            "field `{}` ends at byte {end}, past the struct's size {size}",
                            f.name.name
                        ),
                    )
                    .label("past the end")
                    .related(s.size.span, "size declared here")
                    .hint("fix the field's offset or type, or the struct's size"),
                );
            }
        }
        if size == 0 || size % struct_align != 0 {
            self.error(
                Diagnostic::new("bad-size", s.size.span, format!("size {size} of `{}` is not a positive multiple of its alignment {struct_align}", s.name.name))
                    .label("bad size")
                    .hint("C pads a struct's size to its alignment; check the upstream size"),
            );
        }
    }
}
