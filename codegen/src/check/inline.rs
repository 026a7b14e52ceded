//! `inline "ASM";` forms: only hot ops have patched sites, one form per
//! mapping, every placeholder resolves ([`crate::ir::inline`]), and one
//! hypervisor's forms agree on the structure its CPU area holds.

use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::source::Span;

impl Checker {
    pub(super) fn check_inline_forms(&mut self, hv: &Hypervisor) {
        // The first structure named, and where.
        let mut area: Option<(String, Span)> = None;
        for item in &hv.items {
            let HvItem::Map(map) = item else { continue };
            let Some(op) = self.ops.get(&map.op.name).cloned() else {
                continue;
            };
            for extra in map.inline.iter().skip(1) {
                self.error(
                    Diagnostic::new(
                        "inline-twice",
                        extra.span,
                        format!("`{}` already has an inline form", op.name.name),
                    )
                    .label("second `inline`")
                    .related(map.inline[0].span, "the first one")
                    .hint("a patched site becomes one sequence: keep one `inline \"…\";`"),
                );
            }
            let Some(form) = map.inline.first() else {
                continue;
            };
            if !op.stmts.iter().any(|s| matches!(s, OpStmt::Hot(_))) {
                self.error(
                    Diagnostic::new(
                        "inline-not-hot",
                        form.span,
                        format!("`{}` is not a hot op: it has no patched sites", op.name.name),
                    )
                    .label("never patched in")
                    .related(op.name.span, "declared here without `hot;`")
                    .hint("only `hot` ops are emitted as patchable sites; say how the hypervisor serves this op with the chain's steps"),
                );
                continue;
            }
            match crate::ir::inline::resolve(form, &op, &self.types) {
                Err(why) => {
                    let start = form.span.start + 1 + why.at;
                    let span = Span::new(form.span.file, start, start + why.len);
                    self.error(
                        Diagnostic::new("inline-placeholder", span, why.message)
                            .label("cannot bind")
                            .hint(why.hint),
                    );
                }
                Ok(inline) => match (&area, inline.area_struct) {
                    (Some((first, at)), Some(this)) if *first != this => {
                        self.error(
                            Diagnostic::new(
                                "inline-area-mismatch",
                                form.span,
                                format!("this inline form reaches `{this}` in the CPU's hypervisor area, which holds `{first}`"),
                            )
                            .label(format!("`{this}`"))
                            .related(*at, format!("`{first}` here"))
                            .hint("the backend keeps one structure in each CPU's area: name its fields in every inline form"),
                        );
                    }
                    (None, Some(this)) => area = Some((this, form.span)),
                    _ => {}
                },
            }
        }
    }
}
