//! A lexical pre-pass run before the grammar.
//!
//! It finds the mistakes a PEG parser reports badly (an unterminated string
//! or comment shows up far from where it starts) and bounds bracket nesting,
//! so that no input can drive the recursive parser into a stack overflow.

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Span};

/// Deepest bracket nesting the language accepts. Real IDL needs four.
pub const MAX_NESTING: usize = 32;

/// The first lexical problem in `text`, if any.
pub fn check(file: FileId, text: &str) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match text[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 2,
                None => {
                    return Some(
                        Diagnostic::new(
                            "unterminated-comment",
                            Span::new(file, i, i + 2),
                            "unterminated block comment",
                        )
                        .label("this comment is never closed")
                        .hint("close it with `*/`; block comments do not nest"),
                    )
                }
            },
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => {
                            return Some(
                                Diagnostic::new(
                                    "unterminated-string",
                                    Span::new(file, start, start + 1),
                                    "unterminated string",
                                )
                                .label("this string is not closed on its line")
                                .hint(
                                    "close it with `\"`; strings cannot span lines (write `\\n`)",
                                ),
                            )
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                open.push(i);
                if open.len() > MAX_NESTING {
                    return Some(
                        Diagnostic::new(
                            "nesting-too-deep",
                            Span::new(file, i, i + 1),
                            format!("brackets nested more than {MAX_NESTING} deep"),
                        )
                        .label("too deep")
                        .hint(
                            "the IDL never needs deep nesting; look for a missing closing bracket",
                        ),
                    );
                }
            }
            b')' | b']' | b'}' => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    None
}
