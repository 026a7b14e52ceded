//! Collecting top-level declarations: one interface, unique names for units,
//! types, error kinds, groups, ops and hypervisors.

use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::model::int_primitive;
use crate::source::Span;
use std::collections::BTreeMap;

impl Checker {
    /// Fill the global tables; returns the interface declaration if there is
    /// exactly one.
    pub(super) fn collect(&mut self, files: &[File]) -> Option<Interface> {
        let mut interface: Option<Interface> = None;
        let mut unit_names = BTreeMap::new();
        let mut type_names = BTreeMap::new();
        let mut group_names = BTreeMap::new();
        let mut op_names = BTreeMap::new();
        let mut hv_names = BTreeMap::new();
        let mut errors_decl: Option<Span> = None;
        for item in files.iter().flat_map(|f| &f.items) {
            match item {
                Item::Interface(i) => match &interface {
                    Some(first) => {
                        let first = first.span;
                        self.error(
                            Diagnostic::new(
                                "duplicate-interface",
                                i.span,
                                "a second `interface` declaration",
                            )
                            .label("second declaration")
                            .related(first, "the interface is declared here")
                            .hint("all files form one interface: declare it once"),
                        );
                    }
                    None => interface = Some(i.clone()),
                },
                Item::Unit(u) => {
                    if self.unique(&mut unit_names, &u.name, "unit") {
                        self.unit_decls.insert(u.name.name.clone(), u.clone());
                    }
                }
                Item::Type(t) => self.collect_type(&mut type_names, t),
                Item::Errors(e) => {
                    if let Some(first) = errors_decl {
                        self.error(
                            Diagnostic::new(
                                "duplicate-errors",
                                e.span,
                                "a second `errors` declaration",
                            )
                            .label("second declaration")
                            .related(first, "error kinds are declared here")
                            .hint("list every error kind in one `errors` block"),
                        );
                        continue;
                    }
                    errors_decl = Some(e.span);
                    let mut kinds = BTreeMap::new();
                    for k in &e.kinds {
                        self.unique(&mut kinds, &k.name, "error kind");
                    }
                    self.error_kinds = kinds;
                }
                Item::Group(g) => {
                    self.unique(&mut group_names, &g.name, "group");
                    for op in &g.ops {
                        if self.unique(&mut op_names, &op.name, "op") {
                            self.ops.insert(op.name.name.clone(), op.clone());
                        }
                    }
                }
                Item::Hypervisor(h) => {
                    self.unique(&mut hv_names, &h.name, "hypervisor");
                    for hv_item in &h.items {
                        if let HvItem::Type(t) = hv_item {
                            self.collect_type(&mut type_names, t);
                        }
                    }
                }
            }
        }
        if interface.is_none() {
            let span = files
                .first()
                .and_then(|f| f.items.first())
                .map(Item::span)
                .unwrap_or_default();
            self.error(
                Diagnostic::new(
                    "missing-interface",
                    Span::new(span.file, 0, 0),
                    "no `interface` declaration",
                )
                .label("expected here or in another file")
                .hint("declare the interface and its version once, e.g. `interface pvi 0.1.0;`"),
            );
        }
        interface
    }

    fn collect_type(&mut self, seen: &mut BTreeMap<String, Span>, t: &TypeDecl) {
        let name = t.name();
        if int_primitive(&name.name).is_some() || matches!(name.name.as_str(), "bool" | "bytes") {
            self.error(
                Diagnostic::new(
                    "shadows-primitive",
                    name.span,
                    format!("`{}` is a primitive type", name.name),
                )
                .label("cannot be redeclared")
                .hint("choose another name"),
            );
            return;
        }
        if self.unique(seen, name, "type") {
            self.types.insert(name.name.clone(), t.clone());
        }
    }
}
