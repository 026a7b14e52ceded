//! Attributes and versions: `@since`, `@deprecated`, `@hv_since`, and the
//! interface version itself.

use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;

const ATTRIBUTES: &[&str] = &["since", "deprecated", "hv_since"];

impl Checker {
    pub(super) fn check_attrs(&mut self, files: &[File], interface: Option<&Interface>) {
        let current = interface.and_then(|i| self.semver(&i.version, "the interface version"));
        for item in files.iter().flat_map(|f| &f.items) {
            match item {
                Item::Interface(i) => self.meta(&i.meta, false, current),
                Item::Unit(u) => self.meta(&u.meta, false, current),
                Item::Type(t) => self.type_metas(t, false, current),
                Item::Errors(e) => {
                    self.meta(&e.meta, false, current);
                    for k in &e.kinds {
                        self.meta(&k.meta, false, current);
                    }
                }
                Item::Group(g) => {
                    self.meta(&g.meta, false, current);
                    for op in &g.ops {
                        self.meta(&op.meta, false, current);
                    }
                }
                Item::Hypervisor(h) => {
                    self.meta(&h.meta, false, current);
                    for hv_item in &h.items {
                        match hv_item {
                            HvItem::Abi(a) => self.meta(&a.meta, true, current),
                            HvItem::Detect(d) => self.meta(&d.meta, true, current),
                            HvItem::Convention(c) => self.meta(&c.meta, true, current),
                            HvItem::Leaf(l) => {
                                self.meta(&l.meta, true, current);
                                for r in &l.registers {
                                    self.meta(&r.meta, true, current);
                                }
                            }
                            HvItem::Features(f) => {
                                self.meta(&f.meta, true, current);
                                for b in &f.bits {
                                    self.meta(&b.meta, true, current);
                                }
                            }
                            HvItem::Msr(m) => self.meta(&m.meta, true, current),
                            HvItem::Const(c) => self.meta(&c.meta, true, current),
                            HvItem::Hypercall(h) => self.meta(&h.meta, true, current),
                            HvItem::Error(e) => self.meta(&e.meta, true, current),
                            HvItem::Map(m) => self.meta(&m.meta, true, current),
                            HvItem::Type(t) => self.type_metas(t, true, current),
                        }
                    }
                }
            }
        }
    }

    fn type_metas(&mut self, t: &TypeDecl, in_hv: bool, current: Option<[u64; 3]>) {
        self.meta(t.meta(), in_hv, current);
        match t {
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => {
                for m in &e.members {
                    self.meta(&m.meta, in_hv, current);
                }
            }
            TypeDecl::Struct(s) => {
                for f in &s.fields {
                    self.meta(&f.meta, in_hv, current);
                }
            }
            TypeDecl::Newtype(_) => {}
        }
    }

    /// A `MAJOR.MINOR.PATCH` version, or a diagnostic saying why not.
    fn semver(&mut self, v: &Version, what: &str) -> Option<[u64; 3]> {
        if let Some(bad) = self.bad_version_part(v) {
            self.error(bad);
            return None;
        }
        match v.parts.as_slice() {
            [a, b, c] => Some([*a, *b, *c]),
            _ => {
                self.error(
                    Diagnostic::new(
                        "bad-version",
                        v.span,
                        format!("{what} must be MAJOR.MINOR.PATCH, found `{}`", v.text),
                    )
                    .label("three numbers expected")
                    .hint(format!("write e.g. `{}`", padded(v))),
                );
                None
            }
        }
    }

    fn bad_version_part(&self, v: &Version) -> Option<Diagnostic> {
        for part in v.text.split('.') {
            if part.len() > 1 && part.starts_with('0') {
                return Some(
                    Diagnostic::new("bad-version", v.span, format!("version `{}` has a leading zero", v.text))
                        .label("leading zero")
                        .hint("write version parts without leading zeros, as semantic versioning requires"),
                );
            }
            if part.parse::<u64>().is_err() {
                return Some(
                    Diagnostic::new(
                        "bad-version",
                        v.span,
                        format!("version `{}` has a part too large", v.text),
                    )
                    .label("does not fit in 64 bits")
                    .hint("version parts are small numbers"),
                );
            }
        }
        None
    }

    fn meta(&mut self, meta: &Meta, in_hv: bool, current: Option<[u64; 3]>) {
        let mut seen = std::collections::BTreeMap::new();
        let mut since: Option<[u64; 3]> = None;
        for attr in &meta.attrs {
            let name = attr.name.name.as_str();
            if !ATTRIBUTES.contains(&name) {
                let d = Diagnostic::new(
                    "unknown-attribute",
                    attr.name.span,
                    format!("unknown attribute `@{name}`"),
                )
                .label("not an attribute")
                .suggest(
                    name,
                    ATTRIBUTES,
                    "attributes are @since, @deprecated and @hv_since",
                );
                self.error(d);
                continue;
            }
            if !self.unique(&mut seen, &attr.name, "attribute") {
                continue;
            }
            match name {
                "since" | "deprecated" => {
                    let wanted = if name == "since" { 1..=1 } else { 1..=2 };
                    if !self.attr_arity(
                        attr,
                        wanted,
                        "`@since(VERSION)`, `@deprecated(VERSION[, \"NOTE\"])`",
                    ) {
                        continue;
                    }
                    let Some(AttrArg::Version(v)) = attr.args.first() else {
                        self.attr_type(attr, 0, "a version such as `0.1.0`");
                        continue;
                    };
                    if let Some(note) = attr.args.get(1) {
                        if !matches!(note, AttrArg::Str(_)) {
                            self.attr_type(attr, 1, "a string");
                        }
                    }
                    let Some(version) = self.semver(v, &format!("the `@{name}` version")) else {
                        continue;
                    };
                    if let Some(current) = current {
                        if version > current {
                            self.error(
                                Diagnostic::new(
                                    "version-from-future",
                                    v.span,
                                    format!(
                                        "`@{name}({})` is newer than the interface version",
                                        v.text
                                    ),
                                )
                                .label("newer than the interface")
                                .hint(format!(
                                    "bump the interface version to at least {} or correct this one",
                                    v.text
                                )),
                            );
                        }
                    }
                    if name == "since" {
                        since = Some(version);
                    } else if let Some(s) = since.filter(|s| version < *s) {
                        self.error(
                            Diagnostic::new(
                                "deprecated-before-since",
                                v.span,
                                format!(
                                    "deprecated in {} but only introduced in {}.{}.{}",
                                    v.text, s[0], s[1], s[2]
                                ),
                            )
                            .label("before `@since`")
                            .hint("an item cannot be deprecated before it exists"),
                        );
                    }
                }
                _ => {
                    if !in_hv {
                        self.error(
                            Diagnostic::new(
                                "misplaced-attribute",
                                attr.name.span,
                                "`@hv_since` applies only to items of a hypervisor ABI",
                            )
                            .label("not in a hypervisor block")
                            .hint("use `@since` for the pvi interface version"),
                        );
                        continue;
                    }
                    if !self.attr_arity(attr, 1..=1, "`@hv_since(VERSION)`") {
                        continue;
                    }
                    match attr.args.first() {
                        Some(AttrArg::Version(v)) => {
                            if let Some(bad) = self.bad_version_part(v) {
                                self.error(bad);
                            }
                        }
                        _ => self.attr_type(attr, 0, "a version such as `3.10`"),
                    }
                }
            }
        }
    }

    fn attr_arity(
        &mut self,
        attr: &Attr,
        wanted: std::ops::RangeInclusive<usize>,
        usage: &str,
    ) -> bool {
        if wanted.contains(&attr.args.len()) {
            return true;
        }
        self.error(
            Diagnostic::new(
                "attribute-arguments",
                attr.span,
                format!(
                    "`@{}` takes {} argument(s), {} given",
                    attr.name.name,
                    wanted_text(&wanted),
                    attr.args.len()
                ),
            )
            .label("wrong number of arguments")
            .hint(format!("write {usage}")),
        );
        false
    }

    fn attr_type(&mut self, attr: &Attr, index: usize, wanted: &str) {
        let span = attr.args.get(index).map(AttrArg::span).unwrap_or(attr.span);
        self.error(
            Diagnostic::new(
                "attribute-arguments",
                span,
                format!(
                    "argument {} of `@{}` must be {wanted}",
                    index + 1,
                    attr.name.name
                ),
            )
            .label("wrong kind of argument")
            .hint("see the attribute table in book/src/idl.md"),
        );
    }
}

fn wanted_text(r: &std::ops::RangeInclusive<usize>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{} or {}", r.start(), r.end())
    }
}

fn padded(v: &Version) -> String {
    let mut parts: Vec<String> = v.parts.iter().take(3).map(u64::to_string).collect();
    while parts.len() < 3 {
        parts.push("0".into());
    }
    parts.join(".")
}
