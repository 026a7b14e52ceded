//! Diagnostics: what went wrong, where, and what to do about it.

use crate::source::{LineCol, SourceMap, Span};
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::term::{self, termcolor::Buffer};

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The command fails.
    Error,
    /// Worth reading; nothing fails.
    Warning,
    /// For information.
    Note,
}

impl Severity {
    /// The word reports use.
    pub fn word(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One problem found in the IDL.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// How serious it is (an error unless set).
    pub severity: Severity,
    /// A stable rule id such as `unknown-type`; tests and tools match on it.
    pub code: &'static str,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where it is wrong.
    pub span: Span,
    /// Short text under the caret.
    pub label: String,
    /// Other places that explain the problem (the first definition of a
    /// duplicate, say).
    pub related: Vec<(Span, String)>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with rule id `code` and `message` at `span`.
    pub fn new(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: String::new(),
            related: Vec::new(),
            hint: None,
        }
    }

    /// Make it a warning or a note instead of an error.
    pub fn severity(mut self, severity: Severity) -> Diagnostic {
        self.severity = severity;
        self
    }

    /// Set the text under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// Point at another place that explains the problem.
    pub fn related(mut self, span: Span, note: impl Into<String>) -> Diagnostic {
        self.related.push((span, note.into()));
        self
    }

    /// Say what to do about it.
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Hint at the known word closest to `word` ("did you mean …?"), or say
    /// `otherwise` when none is close enough to be a typo.
    pub fn suggest(self, word: &str, known: &[&str], otherwise: impl Into<String>) -> Diagnostic {
        match crate::parser::closest(word, known) {
            Some(best) => self.hint(format!("did you mean `{best}`?")),
            None => self.hint(otherwise),
        }
    }

    /// Where the problem starts.
    pub fn line_col(&self, sources: &SourceMap) -> LineCol {
        sources.line_col(self.span)
    }

    /// `file:line:col: error[code]: message`, the one-line form.
    pub fn short(&self, sources: &SourceMap) -> String {
        let at = self.line_col(sources);
        format!(
            "{}:{}:{}: {}[{}]: {}",
            sources.name(self.span.file),
            at.line,
            at.col,
            self.severity.word(),
            self.code,
            self.message
        )
    }

    /// The full report: location, source line with a caret, message, hint.
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        let mut labels = vec![
            Label::primary(self.span.file, self.span.start..self.span.end)
                .with_message(self.label.clone()),
        ];
        for (span, note) in &self.related {
            labels.push(Label::secondary(span.file, span.start..span.end).with_message(note));
        }
        let mut notes = Vec::new();
        if let Some(hint) = &self.hint {
            notes.push(format!("hint: {hint}"));
        }
        let report = match self.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
            Severity::Note => CsDiagnostic::note(),
        }
        .with_code(self.code)
        .with_message(&self.message)
        .with_labels(labels)
        .with_notes(notes);
        let mut buffer = if color {
            Buffer::ansi()
        } else {
            Buffer::no_color()
        };
        let config = term::Config::default();
        if term::emit_to_write_style(&mut buffer, &config, sources.files(), &report).is_err() {
            return format!("{}\n", self.short(sources));
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }
}

/// Several diagnostics, in the order they were found.
pub type Diagnostics = Vec<Diagnostic>;
