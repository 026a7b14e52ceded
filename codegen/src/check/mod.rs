//! The checker: turns syntax trees into a [`Model`] or explains, with every
//! problem it finds, why it cannot.
//!
//! One pass per concern, each in its own file: declarations and names
//! ([`decls`]), attributes and versions ([`attrs`]), types, units and layouts
//! ([`types`]), ops ([`ops`]), hypervisor ABIs ([`hypervisor`]), mappings
//! ([`mapping`]) and hot ops' inline forms ([`inline`]).

mod attrs;
mod decls;
mod hypervisor;
mod inline;
mod mapping;
mod ops;
mod types;

pub(crate) use ops::CONTEXTS;

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Model, UnitInfo};
use crate::source::Span;
use std::collections::BTreeMap;

/// Check `files` together as one interface.
pub fn check(mut files: Vec<File>) -> Result<Model, Diagnostics> {
    let mut cx = Checker::default();
    cx.inherit_abis(&mut files);
    let interface = cx.collect(&files);
    cx.check_attrs(&files, interface.as_ref());
    cx.check_types();
    cx.check_ops(&files);
    cx.check_hypervisors(&files);
    match interface {
        Some(interface) if cx.diags.is_empty() => {
            // Resolved once, from blocks that passed: generators read these.
            let hypervisors = || {
                files.iter().flat_map(|f| &f.items).filter_map(|i| match i {
                    Item::Hypervisor(h) => Some(h),
                    _ => None,
                })
            };
            let conventions = hypervisors()
                .filter_map(|h| Some((h.name.name.clone(), crate::ir::Convention::of(h)?)))
                .collect();
            let chains = hypervisors()
                .map(|h| {
                    (
                        h.name.name.clone(),
                        crate::ir::chain::chains_of(h, &cx.types),
                    )
                })
                .collect();
            let resolved_ops = crate::ir::op::ops_of(
                files.iter().flat_map(|f| &f.items).filter_map(|i| match i {
                    Item::Group(g) => Some(g),
                    _ => None,
                }),
            );
            Ok(Model {
                resolved_ops,
                files,
                interface,
                units: cx.units,
                types: cx.types,
                source_hash: 0,
                conventions,
                chains,
            })
        }
        _ => {
            cx.diags.sort_by_key(|d| (d.span.file, d.span.start));
            Err(cx.diags)
        }
    }
}

/// What the passes share: the diagnostics found so far and the global
/// symbol tables.
#[derive(Default)]
struct Checker {
    diags: Diagnostics,
    units: BTreeMap<String, UnitInfo>,
    unit_decls: BTreeMap<String, UnitDecl>,
    types: BTreeMap<String, TypeDecl>,
    error_kinds: BTreeMap<String, Span>,
    ops: BTreeMap<String, Op>,
}

impl Checker {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Report `name` as a duplicate if `seen` already has it; else record it.
    fn unique(&mut self, seen: &mut BTreeMap<String, Span>, name: &Ident, what: &str) -> bool {
        if let Some(first) = seen.get(&name.name) {
            let first = *first;
            self.error(
                Diagnostic::new(
                    "duplicate-name",
                    name.span,
                    format!("{what} `{}` is declared twice", name.name),
                )
                .label("second declaration")
                .related(first, "first declared here")
                .hint("rename one of them or remove the duplicate"),
            );
            false
        } else {
            seen.insert(name.name.clone(), name.span);
            true
        }
    }
}
