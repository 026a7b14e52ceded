//! IDL source files and the spans that point into them.

use codespan_reporting::files::{Files, SimpleFiles};

/// Index of a file in a [`SourceMap`].
pub type FileId = usize;

/// A byte range in one source file.
///
/// Spans are locations, not content: two spans always compare equal, so that
/// two syntax trees that differ only in where things were written are equal.
/// This is what lets `pvi fmt` prove that formatting did not change the model.
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}
impl Eq for Span {}

impl Span {
    /// A span covering `start..end` of `file`.
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start, end }
    }
}

/// A line and column, both counted from 1; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

/// The text of every file taking part in one check.
#[derive(Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Add a file and return its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.add(name.into(), text.into())
    }

    /// The file's name as given to [`SourceMap::add`].
    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.name().as_str())
            .unwrap_or("<unknown>")
    }

    /// The file's text.
    pub fn text(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// Where `span` starts.
    pub fn line_col(&self, span: Span) -> LineCol {
        match self.files.location(span.file, span.start) {
            Ok(loc) => LineCol {
                line: loc.line_number,
                col: loc.column_number,
            },
            Err(_) => LineCol { line: 1, col: 1 },
        }
    }

    /// The underlying codespan file database, for rendering.
    pub(crate) fn files(&self) -> &SimpleFiles<String, String> {
        &self.files
    }
}
