//! `pvi fmt`: print a syntax tree back in canonical form.
//!
//! The layout is fixed (four-space indent, one declaration or statement per
//! line, canonical spacing), but nothing a person wrote is lost: doc comments
//! are part of the tree, ordinary comments are carried over by position (a
//! comment inside a one-line statement moves above it), blank lines between
//! declarations are kept (at most one), and integers keep their notation.

use crate::ast::*;

/// Format `file`, parsed from `source`.
pub fn format_file(file: &File, source: &str) -> String {
    let mut p = Printer::new(source);
    for line in &file.docs.lines {
        p.raw_line(&doc_line("//!", line));
    }
    let mut prev_end = None;
    if !file.docs.lines.is_empty() && !file.items.is_empty() {
        p.out.push('\n');
    }
    for item in &file.items {
        let span = item.span();
        p.separate(prev_end, span.start, prev_end.is_some());
        p.item(item);
        prev_end = Some(span.end);
    }
    p.flush_before(usize::MAX);
    p.out
}

struct Comment {
    start: usize,
    end: usize,
}

struct Printer<'a> {
    src: &'a str,
    comments: Vec<Comment>,
    next: usize,
    out: String,
    indent: usize,
}

impl<'a> Printer<'a> {
    fn new(src: &'a str) -> Printer<'a> {
        Printer {
            src,
            comments: find_comments(src),
            next: 0,
            out: String::new(),
            indent: 0,
        }
    }

    fn line_of(&self, pos: usize) -> usize {
        self.src.as_bytes()[..pos.min(self.src.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    fn push_indent(&mut self) {
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
    }

    fn raw_line(&mut self, text: &str) {
        self.push_indent();
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Print every comment that starts before `pos` on lines of its own,
    /// keeping a blank line that followed one.
    fn flush_before(&mut self, pos: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.start >= pos {
                break;
            }
            let (start, end) = (c.start, c.end);
            let text = self.src[start..end].trim_end().to_string();
            self.next += 1;
            self.raw_line(&text);
            let next = self
                .comments
                .get(self.next)
                .map(|n| n.start)
                .filter(|n| *n < pos)
                .unwrap_or(pos);
            if next != usize::MAX && self.blank_line_in(end, next.min(self.src.len())) {
                self.out.push('\n');
            }
        }
    }

    /// Whether the source has an empty line between `a` and `b`.
    fn blank_line_in(&self, a: usize, b: usize) -> bool {
        let gap = &self.src[a.min(b)..b];
        let lines: Vec<&str> = gap.split('\n').collect();
        lines.len() > 2
            && lines[1..lines.len() - 1]
                .iter()
                .any(|l| l.trim().is_empty())
    }

    /// Print one line for a node ending at `end`, with a `//` comment that
    /// follows it on the same source line appended.
    fn line(&mut self, text: &str, end: usize) {
        self.push_indent();
        self.out.push_str(text);
        if let Some(c) = self.comments.get(self.next) {
            let same_line = self.line_of(c.start) == self.line_of(end.saturating_sub(1));
            let adjacent = c.start >= end && self.src[end..c.start].trim().is_empty();
            if same_line && adjacent && self.src[c.start..].starts_with("//") {
                self.out.push_str("  ");
                self.out.push_str(self.src[c.start..c.end].trim_end());
                self.next += 1;
            }
        }
        self.out.push('\n');
    }

    /// Before a node starting at `start`: one blank line if the source had
    /// one since `prev_end` (and `allow_blank`), then the comments before it.
    fn separate(&mut self, prev_end: Option<usize>, start: usize, allow_blank: bool) {
        if let (Some(prev), true) = (prev_end, allow_blank) {
            let first = self
                .comments
                .get(self.next)
                .map(|c| c.start)
                .filter(|c| *c < start)
                .unwrap_or(start);
            if self.blank_line_in(prev, first) {
                self.out.push('\n');
            }
        }
        self.flush_before(start);
    }

    /// A one-line node: its comments (including any inside it) go above.
    fn leaf(&mut self, prev_end: &mut Option<usize>, span: crate::source::Span, text: &str) {
        self.separate(*prev_end, span.start, true);
        self.flush_before(span.end);
        self.line(text, span.end);
        *prev_end = Some(span.end);
    }

    fn meta(&mut self, meta: &Meta) {
        for line in &meta.docs.lines {
            self.raw_line(&doc_line("///", line));
        }
        for attr in &meta.attrs {
            self.raw_line(&attr_text(attr));
        }
    }

    /// `header {`, the children printed by `body`, then `}`.
    fn block(&mut self, header: &str, span: crate::source::Span, body: impl FnOnce(&mut Self)) {
        let brace = self.src[span.start..span.end]
            .find('{')
            .map(|i| span.start + i + 1)
            .unwrap_or(span.start + 1);
        self.line(&format!("{header} {{"), brace);
        self.indent += 1;
        body(self);
        self.flush_before(span.end.saturating_sub(1));
        self.indent -= 1;
        self.line("}", span.end);
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Interface(i) => {
                self.meta(&i.meta);
                self.flush_before(i.span.end);
                self.line(
                    &format!("interface {} {};", i.name.name, i.version.text),
                    i.span.end,
                );
            }
            Item::Unit(u) => {
                self.meta(&u.meta);
                self.flush_before(u.span.end);
                let text = match &u.scale {
                    Some((f, base)) => format!("unit {} = {} {};", u.name.name, f.text, base.name),
                    None => format!("unit {};", u.name.name),
                };
                self.line(&text, u.span.end);
            }
            Item::Type(t) => self.type_decl(t),
            Item::Errors(e) => {
                self.meta(&e.meta);
                self.block("errors", e.span, |p| {
                    let mut prev = None;
                    for k in &e.kinds {
                        p.separate(prev, k.span.start, prev.is_some());
                        p.meta(&k.meta);
                        p.flush_before(k.span.end);
                        p.line(&format!("{};", k.name.name), k.span.end);
                        prev = Some(k.span.end);
                    }
                });
            }
            Item::Group(g) => {
                self.meta(&g.meta);
                self.block(&format!("group {}", g.name.name), g.span, |p| {
                    let mut prev = None;
                    for op in &g.ops {
                        p.separate(prev, op.span.start, prev.is_some());
                        p.op(op);
                        prev = Some(op.span.end);
                    }
                });
            }
            Item::Hypervisor(h) => {
                self.meta(&h.meta);
                self.block(
                    &format!(
                        "hypervisor {} {}",
                        h.name.name,
                        string_text(&h.display.value)
                    ),
                    h.span,
                    |p| {
                        let mut prev = None;
                        for item in &h.items {
                            let span = item.span();
                            p.separate(prev, span.start, prev.is_some());
                            p.hv_item(item);
                            prev = Some(span.end);
                        }
                    },
                );
            }
        }
    }

    fn members(&mut self, members: &[Member]) {
        let mut prev = None;
        for m in members {
            self.separate(prev, m.span.start, prev.is_some());
            self.meta(&m.meta);
            self.flush_before(m.span.end);
            self.line(&format!("{} = {};", m.name.name, m.value.text), m.span.end);
            prev = Some(m.span.end);
        }
    }

    fn type_decl(&mut self, t: &TypeDecl) {
        self.meta(t.meta());
        match t {
            TypeDecl::Newtype(n) => {
                self.flush_before(n.span.end);
                self.line(
                    &format!("newtype {}: {};", n.name.name, type_text(&n.repr)),
                    n.span.end,
                );
            }
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => {
                let kw = if matches!(t, TypeDecl::Flags(_)) {
                    "flags"
                } else {
                    "enum"
                };
                self.block(
                    &format!("{kw} {}: {}", e.name.name, e.repr.name),
                    e.span,
                    |p| p.members(&e.members),
                );
            }
            TypeDecl::Struct(s) => {
                let packed = if s.packed { "packed " } else { "" };
                self.block(
                    &format!("{packed}struct {} size {}", s.name.name, s.size.text),
                    s.span,
                    |p| {
                        let mut prev = None;
                        for f in &s.fields {
                            p.separate(prev, f.span.start, prev.is_some());
                            p.meta(&f.meta);
                            p.flush_before(f.span.end);
                            p.line(
                                &format!(
                                    "{}: {} @ {};",
                                    f.name.name,
                                    type_text(&f.ty),
                                    f.offset.text
                                ),
                                f.span.end,
                            );
                            prev = Some(f.span.end);
                        }
                    },
                );
            }
        }
    }

    fn op(&mut self, op: &Op) {
        self.meta(&op.meta);
        let params: Vec<String> = op.params.iter().map(param_text).collect();
        let mut header = format!("op {}({})", op.name.name, params.join(", "));
        if let Some(r) = &op.result {
            header.push_str(&format!(" -> {}", type_text(r)));
        }
        let first = op
            .stmts
            .first()
            .map(|s| s.span().start)
            .unwrap_or(op.span.end);
        self.flush_before(first.min(op.span.start));
        self.block(&header, op.span, |p| {
            let mut prev = None;
            for stmt in &op.stmts {
                let text = match stmt {
                    OpStmt::Hot(_) => "hot;".to_string(),
                    OpStmt::Required(_) => "required;".to_string(),
                    OpStmt::Unsafe(c, _) => ["unsafe ", &string_text(&c.value), ";"].concat(),
                    OpStmt::Context(c, _) => format!("context {};", c.name),
                    OpStmt::Native(Native::Asm(s), _) => {
                        format!("native asm {};", string_text(&s.value))
                    }
                    OpStmt::Native(Native::Routine(r, uses), _) if uses.is_empty() => {
                        format!("native routine {};", r.name)
                    }
                    OpStmt::Native(Native::Routine(r, uses), _) => {
                        format!("native routine {} uses {};", r.name, names(uses, ", "))
                    }
                    OpStmt::Errors(kinds, _) => format!("errors {};", names(kinds, ", ")),
                };
                p.leaf(&mut prev, stmt.span(), &text);
            }
        });
    }

    fn hv_item(&mut self, item: &HvItem) {
        match item {
            HvItem::Abi(a) => {
                self.meta(&a.meta);
                self.flush_before(a.span.end);
                self.line(&format!("abi {};", a.name.name), a.span.end);
            }
            HvItem::Detect(d) => {
                self.meta(&d.meta);
                self.block("detect", d.span, |p| {
                    let mut prev = None;
                    for s in &d.signatures {
                        p.leaf(
                            &mut prev,
                            stmt_span(p.src, s.span),
                            &format!("signature {};", string_text(&s.value)),
                        );
                    }
                    for probe in &d.probes {
                        p.leaf(
                            &mut prev,
                            stmt_span(p.src, probe.span),
                            &format!("probe {};", probe.name),
                        );
                    }
                    for entry in &d.entries {
                        p.leaf(
                            &mut prev,
                            stmt_span(p.src, entry.span),
                            &format!("entry {};", entry.name),
                        );
                    }
                });
            }
            HvItem::Convention(c) => {
                self.meta(&c.meta);
                self.block("convention", c.span, |p| {
                    let mut prev = None;
                    for stmt in &c.stmts {
                        p.leaf(&mut prev, stmt.span(), &conv_text(stmt));
                    }
                });
            }
            HvItem::Leaf(l) => {
                self.meta(&l.meta);
                let header = format!("leaf {} = {}", l.name.name, l.address.text);
                if l.registers.is_empty() {
                    self.flush_before(l.span.end);
                    self.line(&format!("{header};"), l.span.end);
                } else {
                    self.block(&header, l.span, |p| {
                        let mut prev = None;
                        for r in &l.registers {
                            p.separate(prev, r.span.start, prev.is_some());
                            p.meta(&r.meta);
                            p.flush_before(r.span.end);
                            p.line(
                                &format!("{}: {};", r.name.name, type_text(&r.ty)),
                                r.span.end,
                            );
                            prev = Some(r.span.end);
                        }
                    });
                }
            }
            HvItem::Features(f) => {
                self.meta(&f.meta);
                self.block(
                    &format!("features {}: {}", f.name.name, path_text(&f.register)),
                    f.span,
                    |p| p.members(&f.bits),
                );
            }
            HvItem::Msr(m) => {
                self.meta(&m.meta);
                let mut text = format!("msr {} = {}", m.name.name, m.index.text);
                if let Some(ty) = &m.ty {
                    text.push_str(&format!(": {}", type_text(ty)));
                }
                text.push_str(&requires_text(&m.requires));
                self.flush_before(m.span.end);
                self.line(&format!("{text};"), m.span.end);
            }
            HvItem::Const(c) => {
                self.meta(&c.meta);
                self.flush_before(c.span.end);
                self.line(
                    &format!(
                        "const {}: {} = {};",
                        c.name.name,
                        type_text(&c.ty),
                        c.value.text
                    ),
                    c.span.end,
                );
            }
            HvItem::Hypercall(h) => {
                self.meta(&h.meta);
                let params: Vec<String> = h.params.iter().map(param_text).collect();
                let fast = match (h.fast, h.rep) {
                    (true, true) => " fast rep",
                    (true, false) => " fast",
                    (false, true) => " rep",
                    (false, false) => "",
                };
                let mut text = format!(
                    "hypercall {} = {}{fast} ({})",
                    h.name.name,
                    h.number.text,
                    params.join(", ")
                );
                match &h.result {
                    Some(HcResult::Single(ty)) => text.push_str(&format!(" -> {}", type_text(ty))),
                    Some(HcResult::Named(rs)) => {
                        let rs: Vec<String> = rs.iter().map(param_text).collect();
                        text.push_str(&format!(" -> ({})", rs.join(", ")));
                    }
                    None => {}
                }
                text.push_str(&requires_text(&h.requires));
                self.flush_before(h.span.end);
                self.line(&format!("{text};"), h.span.end);
            }
            HvItem::Error(e) => {
                self.meta(&e.meta);
                self.flush_before(e.span.end);
                self.line(
                    &format!(
                        "error {} = {} => {};",
                        e.name.name, e.code.text, e.kind.name
                    ),
                    e.span.end,
                );
            }
            HvItem::Map(m) => self.map_item(m),
            HvItem::Type(t) => self.type_decl(t),
        }
    }

    /// `map OP like HV;` on one line; a chain as a block of steps.
    fn map_item(&mut self, m: &Map) {
        self.meta(&m.meta);
        if let Some(like) = &m.like {
            self.flush_before(m.span.end);
            self.line(
                &format!("map {} like {};", m.op.name, like.name),
                m.span.end,
            );
            return;
        }
        self.block(&format!("map {}", m.op.name), m.span, |p| {
            // `inline` lines and steps, in the order written.
            let mut lines: Vec<_> = m
                .inline
                .iter()
                .map(|asm| (asm.span, format!("inline {};", string_text(&asm.value))))
                .chain(m.steps.iter().map(|step| (step.span, step_text(step))))
                .collect();
            lines.sort_by_key(|(span, _)| span.start);
            let mut prev = None;
            for (span, text) in &lines {
                p.leaf(&mut prev, *span, text);
            }
        });
    }
}

/// A doc or statement span widened to the end of its `;` so that a trailing
/// comment is recognised (signatures and probes keep only their value's
/// span in the tree).
fn stmt_span(src: &str, span: crate::source::Span) -> crate::source::Span {
    let end = src[span.end..]
        .find(';')
        .map(|i| span.end + i + 1)
        .unwrap_or(span.end);
    let start = src[..span.start]
        .rfind([';', '{', '}'])
        .map(|i| i + 1)
        .unwrap_or(0);
    let start = start + src[start..span.start].len() - src[start..span.start].trim_start().len();
    crate::source::Span::new(span.file, start, end)
}

/// Regular comments in `src` (not doc comments), in order.
fn find_comments(src: &str) -> Vec<Comment> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map(|n| i + n).unwrap_or(src.len());
                let is_doc = matches!(bytes.get(i + 2), Some(b'/') | Some(b'!'));
                if !is_doc {
                    out.push(Comment { start: i, end });
                }
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..]
                    .find("*/")
                    .map(|n| i + 2 + n + 2)
                    .unwrap_or(src.len());
                out.push(Comment { start: i, end });
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

fn doc_line(marker: &str, line: &str) -> String {
    if line.is_empty() {
        marker.to_string()
    } else {
        format!("{marker} {line}")
    }
}

fn names(ids: &[Ident], sep: &str) -> String {
    ids.iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(sep)
}

fn requires_text(requires: &[Ident]) -> String {
    if requires.is_empty() {
        String::new()
    } else {
        format!(" requires {}", names(requires, ", "))
    }
}

fn attr_text(attr: &Attr) -> String {
    if attr.args.is_empty() {
        return format!("@{}", attr.name.name);
    }
    let args: Vec<String> = attr
        .args
        .iter()
        .map(|a| match a {
            AttrArg::Version(v) => v.text.clone(),
            AttrArg::Int(i) => i.text.clone(),
            AttrArg::Str(s) => string_text(&s.value),
            AttrArg::Ident(i) => i.name.clone(),
        })
        .collect();
    format!("@{}({})", attr.name.name, args.join(", "))
}

/// A string literal that decodes to `value`.
pub fn string_text(value: &[u8]) -> String {
    let mut out = String::from("\"");
    let text = String::from_utf8(value.to_vec());
    let push_byte = |out: &mut String, b: u8| match b {
        b'\n' => out.push_str("\\n"),
        b'\t' => out.push_str("\\t"),
        b'\r' => out.push_str("\\r"),
        0 => out.push_str("\\0"),
        b'\\' => out.push_str("\\\\"),
        b'"' => out.push_str("\\\""),
        0x20..=0x7e => out.push(b as char),
        _ => out.push_str(&format!("\\x{b:02x}")),
    };
    match text {
        Ok(s) => {
            for c in s.chars() {
                if c.is_ascii() {
                    push_byte(&mut out, c as u8);
                } else if c.is_control() {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        push_byte(&mut out, b);
                    }
                } else {
                    out.push(c);
                }
            }
        }
        Err(_) => {
            for &b in value {
                push_byte(&mut out, b);
            }
        }
    }
    out.push('"');
    out
}

/// A type as written canonically (`u64 in ns`, `[u8; 4]`).
pub fn type_text(ty: &TypeRef) -> String {
    match ty {
        TypeRef::Named {
            name,
            unit: Some(u),
            ..
        } => format!("{} in {}", name.name, u.name),
        TypeRef::Named {
            name, unit: None, ..
        } => name.name.clone(),
        TypeRef::Array { elem, len, .. } => format!("[{}; {}]", type_text(elem), len.text),
    }
}

fn param_text(p: &Param) -> String {
    format!("{}: {}", p.name.name, type_text(&p.ty))
}

/// `NAME` or `NAME.member` as written.
pub fn path_text(p: &Path) -> String {
    match &p.member {
        Some(m) => format!("{}.{}", p.base.name, m.name),
        None => p.base.name.clone(),
    }
}

/// A calling-convention statement as written canonically, with its `;`.
pub fn conv_text(stmt: &ConvStmt) -> String {
    match stmt {
        ConvStmt::Instruction(forms, _) => format!("instruction {};", names(forms, " | ")),
        ConvStmt::Page(path, stride, _) => {
            format!("page {} stride {};", path_text(path), stride.text)
        }
        ConvStmt::Number(r, _) => format!("number {};", r.name),
        ConvStmt::Args(regs, _) => format!("args {};", names(regs, ", ")).replace(" ;", ";"),
        ConvStmt::Result(regs, _) => format!("result {};", names(regs, ", ")).replace(" ;", ";"),
        ConvStmt::Clobbers(regs, _) => {
            format!("clobbers {};", names(regs, ", ")).replace(" ;", ";")
        }
        ConvStmt::Fixed(pairs, _) => {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|f| match &f.form {
                    Some(w) => format!("{} = {} when {}", f.reg.name, f.value.text, w.name),
                    None => format!("{} = {}", f.reg.name, f.value.text),
                })
                .collect();
            format!("fixed {};", pairs.join(", "))
        }
        ConvStmt::FastBit(b, _) => format!("fast_bit {};", b.text),
        ConvStmt::RepShift(b, _) => format!("rep_shift {};", b.text),
        ConvStmt::Status(s, _) => format!("status {};", s.name),
        ConvStmt::Choose(choices, _) => {
            let rules: Vec<String> = choices
                .iter()
                .map(|c| match &c.when {
                    ChoiceCond::Vendor(v) => format!(
                        "{} when vendor {}",
                        c.form.name,
                        v.iter()
                            .map(|s| string_text(&s.value))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    ),
                    ChoiceCond::Feature(b) => format!("{} when {}", c.form.name, b.name),
                })
                .collect();
            format!("choose {};", rules.join(", "))
        }
    }
}

/// An argument expression as written canonically.
pub fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Int(i) => i.text.clone(),
        Expr::Name(n) => n.name.clone(),
        Expr::Member(b, m, _) => format!("{}.{}", b.name, m.name),
        Expr::Struct(name, fields, _) => {
            if fields.is_empty() {
                return format!("{} {{}}", name.name);
            }
            let fields: Vec<String> = fields
                .iter()
                .map(|(f, v)| format!("{}: {}", f.name, expr_text(v)))
                .collect();
            format!("{} {{ {} }}", name.name, fields.join(", "))
        }
        Expr::As(inner, unit, _) => format!("{} as {}", expr_text(inner), unit.name),
        Expr::Each(param, _) => format!("each {}", param.name),
    }
}

/// A mapping step as written canonically, with its `;`.
pub fn step_text(step: &Step) -> String {
    let mut text = match &step.kind {
        StepKind::Hypercall(name, args) => {
            let args: Vec<String> = args.iter().map(expr_text).collect();
            format!("hypercall {}({})", name.name, args.join(", "))
        }
        StepKind::MsrWrite(name, value) => format!("msr {} = {}", name.name, expr_text(value)),
        StepKind::MsrRead(name, Some(u)) => format!("msr {} as {}", name.name, u.name),
        StepKind::MsrRead(name, None) => format!("msr {}", name.name),
        StepKind::Shared(path, unit, source) => {
            let unit = unit
                .as_ref()
                .map(|u| format!(" as {}", u.name))
                .unwrap_or_default();
            match source {
                Source::Via(via) => format!("shared {}{unit} via {}", path_text(path), via.name),
                Source::Platform(_) => format!("shared {}{unit} from platform", path_text(path)),
            }
        }
        StepKind::Routine(name) => format!("routine {}", name.name),
        StepKind::Cpuid(path, Some(u)) => format!("cpuid {} as {}", path_text(path), u.name),
        StepKind::Cpuid(path, None) => format!("cpuid {}", path_text(path)),
        StepKind::Nop => "nop".to_string(),
        StepKind::Native => "native".to_string(),
    };
    text.push_str(&requires_text(&step.requires));
    if let Some(g) = &step.guard {
        text.push_str(&format!(" when {} == {}", g.param.name, g.variant.name));
    }
    text.push(';');
    text
}
