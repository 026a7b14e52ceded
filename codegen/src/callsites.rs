//! Call sites of the interface's ops in a kernel's source: the measure
//! Ingo Molnar held up against paravirt_ops in 2007 (1463 hook sites),
//! taken on any kernel that uses pvi. A site is a call of a method or
//! function named after an op (`.clock_ns(`, `PvOps::clock_ns(`) or a
//! patchable hot-op site (`patchable_irq_disable!`). The count reads
//! tokens, not text: comments and strings do not count, and calls inside
//! macros (`assert!(b.clock_ns() > t)`) do. A method of another type that
//! happens to share an op's name would count too; the per-op list shows
//! where to look.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::BTreeMap;

/// Sites per op, over the files read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every op of the interface, with its sites (0 for an op not called).
    pub per_op: BTreeMap<String, usize>,
    /// The files read.
    pub files: usize,
}

impl Counts {
    /// Every op of `ops`, none called yet.
    pub fn new<'a>(ops: impl IntoIterator<Item = &'a str>) -> Counts {
        Counts {
            per_op: ops.into_iter().map(|op| (op.to_string(), 0)).collect(),
            files: 0,
        }
    }

    /// Add the sites of one Rust source file; an error for text that is
    /// not Rust tokens (an unclosed delimiter or string).
    pub fn add_file(&mut self, source: &str) -> Result<(), String> {
        let tokens: TokenStream = source.parse().map_err(|e| format!("{e}"))?;
        self.walk(tokens);
        self.files += 1;
        Ok(())
    }

    /// All sites.
    pub fn total(&self) -> usize {
        self.per_op.values().sum()
    }

    /// How many ops have at least one site.
    pub fn called(&self) -> usize {
        self.per_op.values().filter(|n| **n > 0).count()
    }

    fn bump(&mut self, name: &str) {
        if let Some(n) = self.per_op.get_mut(name) {
            *n += 1;
        }
    }

    fn walk(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(g) => self.walk(g.stream()),
                TokenTree::Ident(name) => {
                    let name = name.to_string();
                    let before = i.checked_sub(1).map(|j| &trees[j]);
                    let after = trees.get(i + 1);
                    let called = matches!(after, Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                    let reached = matches!(before, Some(TokenTree::Punct(p)) if p.as_char() == '.' || p.as_char() == ':');
                    if called && reached {
                        self.bump(&name);
                    }
                    let bang = matches!(after, Some(TokenTree::Punct(p)) if p.as_char() == '!');
                    if let Some(op) = name.strip_prefix("patchable_").filter(|_| bang) {
                        self.bump(op);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_and_definitions_comments_and_strings_do_not() {
        let mut c = Counts::new(["clock_ns", "irq_disable", "halt"]);
        c.add_file(
            r#"
            // b.clock_ns() in a comment
            fn clock_ns(&self) -> u64 { 0 }
            fn f(b: &B) {
                let s = "b.clock_ns()";
                let t = b.clock_ns();
                assert!(b.clock_ns() >= t);
                PvOps::clock_ns(b);
                pvi_sdk::patchable_irq_disable!();
                let clock_ns = 3;
            }
            "#,
        )
        .unwrap();
        assert_eq!(c.per_op["clock_ns"], 3);
        assert_eq!(c.per_op["irq_disable"], 1);
        assert_eq!(c.per_op["halt"], 0);
        assert_eq!((c.total(), c.called(), c.files), (4, 2, 1));
    }

    #[test]
    fn text_that_is_not_rust_tokens_is_an_error() {
        let mut c = Counts::new(["clock_ns"]);
        assert!(c.add_file("fn f() { (").is_err());
        assert_eq!(c.files, 0);
    }
}
