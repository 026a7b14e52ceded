//! From text to syntax tree: the lexical pre-pass, the pest grammar, and the
//! conversion of pest's pairs into [`ast`](crate::ast) nodes.

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::lexcheck;
use crate::source::{FileId, Span};
use pest::iterators::Pair;
use pest::Parser as _;
use pest_derive::Parser;
use std::num::NonZeroUsize;
use std::sync::Once;

#[derive(Parser)]
#[grammar = "grammar.pest"]
struct Grammar;

/// Bound on pest's rule calls per parse: far above what any real file needs
/// (the whole IDL takes well under a million), low enough that no input can
/// keep the parser busy for long.
const CALL_LIMIT: usize = 50_000_000;

fn configure_pest() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        pest::set_call_limit(NonZeroUsize::new(CALL_LIMIT));
        pest::set_error_detail(true);
    });
}

/// Parse one file. On failure, the diagnostics say why; a file with a syntax
/// error yields only that error, but unknown keys and malformed literals are
/// all reported.
pub fn parse(file: FileId, text: &str) -> Result<File, Diagnostics> {
    configure_pest();
    if let Some(d) = lexcheck::check(file, text) {
        return Err(vec![d]);
    }
    let mut pairs = match Grammar::parse(Rule::file, text) {
        Ok(pairs) => pairs,
        Err(e) => return Err(vec![syntax_error(file, text, e)]),
    };
    let mut builder = Builder {
        file,
        diags: Vec::new(),
    };
    let ast = builder.file(pairs.next().expect("the file rule always yields one pair"));
    if builder.diags.is_empty() {
        Ok(ast)
    } else {
        Err(builder.diags)
    }
}

/// How a grammar rule is named in "expected …" messages.
fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::item_other | Rule::group_other | Rule::op_other | Rule::hv_other => {
            "a name"
        }
        Rule::detect_other | Rule::conv_other | Rule::map_other => "a name",
        Rule::int => "an integer",
        Rule::version => "a version such as `0.1.0`",
        Rule::string => "a string",
        Rule::doc => "a doc comment",
        Rule::attr | Rule::attr_name => "an attribute",
        Rule::item => "an item",
        Rule::type_ref | Rule::named_type | Rule::array_type => "a type",
        Rule::expr | Rule::struct_lit | Rule::member_ref => "a value",
        Rule::EOI => "end of file",
        _ => {
            let name = format!("{rule:?}");
            let kw = name.strip_prefix("kw_")?;
            return Some(Box::leak(format!("`{kw}`").into_boxed_str()));
        }
    })
}

fn syntax_error(file: FileId, text: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    let mut pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    let attempts = e.parse_attempts();
    // pest's own position is the furthest failed rule; a failed literal (a
    // missing `;`) can be further, and then only the literals there count.
    let literal_is_further = attempts
        .as_ref()
        .is_some_and(|a| a.max_position > pos && a.max_position <= text.len());
    if literal_is_further {
        pos = attempts.as_ref().map(|a| a.max_position).unwrap_or(pos);
    } else if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
        for rule in positives {
            if let Some(d) = describe(*rule) {
                expected.push(d.to_string());
            }
        }
    }
    if let Some(attempts) = attempts {
        for token in attempts.expected_tokens() {
            // `ParsingToken` is not exported; its Debug form names the variant.
            // Only punctuation is worth naming: keywords come as rules, and
            // the rest are pieces of whitespace, comments and literals.
            let text = token.to_string();
            if format!("{token:?}").starts_with("Sensitive") && PUNCTUATION.contains(&text.as_str())
            {
                expected.push(format!("`{text}`"));
            }
        }
    }
    expected.sort();
    expected.dedup();
    // A doc comment where the grammar has no place for one: pest stops on
    // its third slash.
    let line_start = text[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    if let Some(doc) = text[line_start..]
        .find("///")
        .map(|i| line_start + i)
        .filter(|d| *d <= pos && pos <= d + 3)
    {
        return Diagnostic::new("misplaced-doc", Span::new(file, doc, doc + 3), "a doc comment cannot stand here")
            .label("documents nothing")
            .hint("doc comments document declarations (items, members, fields); use `//` for a note on a statement");
    }
    let found = found_at(text, pos);
    let message = match expected.len() {
        0 => format!("unexpected {found}"),
        _ => format!("expected {}, found {found}", join_or(&expected)),
    };
    // A missing terminator belongs at the end of the line that lacks it,
    // not at the start of the next statement.
    let before = text[..pos].trim_end_matches([' ', '\t', '\r', '\n']);
    if expected.iter().any(|e| e == "`;`") && text[before.len()..pos].contains('\n') {
        let at = before.len();
        return Diagnostic::new("syntax", Span::new(file, at, at), message)
            .label("expected `;` here")
            .hint("statements and declarations end with `;`");
    }
    let end = (pos + found_len(text, pos)).min(text.len());
    Diagnostic::new("syntax", Span::new(file, pos, end), message)
        .label("unexpected here")
        .hint("see book/src/idl.md for the syntax of each construct")
}

const PUNCTUATION: &[&str] = &[
    ";", "{", "}", "(", ")", "[", "]", ",", ":", "=", "=>", "==", "->", "@", "|", ".",
];

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

fn found_len(text: &str, pos: usize) -> usize {
    let rest = &text[pos..];
    let word = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum::<usize>();
    if word > 0 {
        word
    } else {
        rest.chars().next().map(char::len_utf8).unwrap_or(0)
    }
}

fn found_at(text: &str, pos: usize) -> String {
    let len = found_len(text, pos);
    if len == 0 {
        return "end of file".to_string();
    }
    let token = &text[pos..pos + len];
    if token.chars().all(|c| !c.is_control()) {
        format!("`{token}`")
    } else {
        format!("character {:?}", token.chars().next().unwrap_or(' '))
    }
}

struct Builder {
    file: FileId,
    diags: Diagnostics,
}

type P<'a> = Pair<'a, Rule>;

impl Builder {
    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, p: P) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn int(&mut self, p: P) -> Int {
        let span = self.span(&p);
        let text = p.as_str().to_string();
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let digits: String = body.chars().filter(|c| *c != '_').collect();
        let parsed = if let Some(hex) = digits.strip_prefix("0x") {
            u128::from_str_radix(hex, 16)
        } else if let Some(bin) = digits.strip_prefix("0b") {
            u128::from_str_radix(bin, 2)
        } else {
            digits.parse::<u128>()
        };
        let magnitude = match parsed {
            Ok(m) if m <= u64::MAX as u128 && !(negative && m > 1u128 << 63) => m as i128,
            Ok(_) | Err(_) => {
                self.diags.push(
                    Diagnostic::new(
                        "int-overflow",
                        span,
                        format!("integer `{text}` does not fit in 64 bits"),
                    )
                    .label("too large")
                    .hint("values range from -2^63 to 2^64-1"),
                );
                0
            }
        };
        Int {
            value: if negative { -magnitude } else { magnitude },
            text,
            span,
        }
    }

    fn version(&self, p: P) -> Version {
        let span = self.span(&p);
        let text = p.as_str().to_string();
        // Parts that overflow become u64::MAX; the checker reports them.
        let parts = text
            .split('.')
            .map(|part| part.parse::<u64>().unwrap_or(u64::MAX))
            .collect();
        Version { parts, text, span }
    }

    fn string(&mut self, p: P) -> Str {
        let span = self.span(&p);
        let body = p.into_inner().next().map(|b| b.as_str()).unwrap_or("");
        let (value, bad) = crate::escape::unescape(body);
        for (at, len) in bad {
            let escape_start = span.start + 1 + at;
            self.diags.push(
                Diagnostic::new(
                    "bad-escape",
                    Span::new(self.file, escape_start, escape_start + len),
                    "unknown escape sequence in string",
                )
                .label("not an escape")
                .hint(format!("escapes are {}", crate::escape::ESCAPES)),
            );
        }
        Str { value, span }
    }

    fn docs(&self, lines: Vec<P>) -> Docs {
        Docs {
            lines: lines
                .into_iter()
                .map(|p| {
                    let text = p.into_inner().next().map(|t| t.as_str()).unwrap_or("");
                    let text = text.strip_suffix('\r').unwrap_or(text);
                    text.strip_prefix(' ').unwrap_or(text).to_string()
                })
                .collect(),
        }
    }

    fn attr(&mut self, p: P) -> Attr {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let name_pair = inner.next().expect("attr has a name");
        let name_span = self.span(&name_pair);
        let name = Ident {
            name: name_pair.as_str().trim_start_matches('@').to_string(),
            span: Span::new(self.file, name_span.start + 1, name_span.end),
        };
        let args = inner
            .map(|arg| {
                let a = arg.into_inner().next().expect("attr_arg has one child");
                match a.as_rule() {
                    Rule::version => AttrArg::Version(self.version(a)),
                    Rule::int => AttrArg::Int(self.int(a)),
                    Rule::string => AttrArg::Str(self.string(a)),
                    _ => AttrArg::Ident(self.ident(a)),
                }
            })
            .collect();
        Attr { name, args, span }
    }

    /// Docs and attributes at the front of `inner`; returns the first other
    /// pair.
    fn meta<'a>(&mut self, inner: &mut impl Iterator<Item = P<'a>>) -> (Meta, Option<P<'a>>) {
        let mut docs = Vec::new();
        let mut attrs = Vec::new();
        for p in inner.by_ref() {
            match p.as_rule() {
                Rule::doc => docs.push(p),
                Rule::attr => attrs.push(self.attr(p)),
                _ => {
                    return (
                        Meta {
                            docs: self.docs(docs),
                            attrs,
                        },
                        Some(p),
                    )
                }
            }
        }
        (
            Meta {
                docs: self.docs(docs),
                attrs,
            },
            None,
        )
    }

    fn unknown(&mut self, p: P, what: &str, known: &[&str]) {
        let name = p.into_inner().next().expect("*_other starts with a name");
        let span = self.span(&name);
        let word = name.as_str();
        let d = Diagnostic::new("unknown-key", span, format!("unknown {what} `{word}`"))
            .label("not known here")
            .suggest(
                word,
                known,
                format!("expected one of: {}", known.join(", ")),
            );
        self.diags.push(d);
    }

    fn file(&mut self, p: P) -> File {
        let mut docs = Vec::new();
        let mut items = Vec::new();
        for child in p.into_inner() {
            match child.as_rule() {
                Rule::inner_doc => docs.push(child),
                Rule::item => {
                    if let Some(item) = self.item(child) {
                        items.push(item);
                    }
                }
                _ => {}
            }
        }
        File {
            docs: self.docs(docs),
            items,
        }
    }

    fn item(&mut self, p: P) -> Option<Item> {
        let mut inner = p.into_inner();
        let (meta, body) = self.meta(&mut inner);
        let body = body?;
        Some(match body.as_rule() {
            Rule::interface_decl => {
                let span = self.span(&body);
                let mut it = body.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let version = self.version(it.next()?);
                Item::Interface(Interface {
                    meta,
                    name,
                    version,
                    span,
                })
            }
            Rule::unit_decl => {
                let span = self.span(&body);
                let mut it = body.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let scale = match (it.next(), it.next()) {
                    (Some(f), Some(b)) => Some((self.int(f), self.ident(b))),
                    _ => None,
                };
                Item::Unit(UnitDecl {
                    meta,
                    name,
                    scale,
                    span,
                })
            }
            Rule::errors_decl => {
                let span = self.span(&body);
                let kinds = body
                    .into_inner()
                    .skip(1)
                    .filter_map(|k| {
                        let kspan = self.span(&k);
                        let mut it = k.into_inner();
                        let (meta, name) = self.meta(&mut it);
                        Some(ErrorKind {
                            meta,
                            name: self.ident(name?),
                            span: kspan,
                        })
                    })
                    .collect();
                Item::Errors(ErrorsDecl { meta, kinds, span })
            }
            Rule::group_decl => Item::Group(self.group(body, meta)?),
            Rule::hypervisor_decl => Item::Hypervisor(self.hypervisor(body, meta)?),
            Rule::item_other => {
                self.unknown(
                    body,
                    "item",
                    &[
                        "interface",
                        "unit",
                        "newtype",
                        "flags",
                        "enum",
                        "struct",
                        "errors",
                        "group",
                        "hypervisor",
                    ],
                );
                return None;
            }
            _ => Item::Type(self.type_decl(body, meta)?),
        })
    }

    fn type_decl(&mut self, p: P, meta: Meta) -> Option<TypeDecl> {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::newtype_decl => {
                let mut it = p.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let repr = self.type_ref(it.next()?);
                Some(TypeDecl::Newtype(Newtype {
                    meta,
                    name,
                    repr,
                    span,
                }))
            }
            Rule::flags_decl | Rule::enum_decl => {
                let is_flags = p.as_rule() == Rule::flags_decl;
                let mut it = p.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let repr = self.ident(it.next()?);
                let members = it.filter_map(|m| self.member(m)).collect();
                let e = Enumeration {
                    meta,
                    name,
                    repr,
                    members,
                    span,
                };
                Some(if is_flags {
                    TypeDecl::Flags(e)
                } else {
                    TypeDecl::Enum(e)
                })
            }
            Rule::struct_decl => {
                let mut it = p.into_inner().peekable();
                let packed = it
                    .peek()
                    .map(|f| f.as_rule() == Rule::kw_packed)
                    .unwrap_or(false);
                if packed {
                    it.next();
                }
                it.next(); // `struct`
                let name = self.ident(it.next()?);
                it.next(); // `size`
                let size = self.int(it.next()?);
                let fields = it
                    .filter_map(|f| {
                        let fspan = self.span(&f);
                        let mut fi = f.into_inner();
                        let (meta, name) = self.meta(&mut fi);
                        let name = self.ident(name?);
                        let ty = self.type_ref(fi.next()?);
                        let offset = self.int(fi.next()?);
                        Some(Field {
                            meta,
                            name,
                            ty,
                            offset,
                            span: fspan,
                        })
                    })
                    .collect();
                Some(TypeDecl::Struct(Struct {
                    meta,
                    packed,
                    name,
                    size,
                    fields,
                    span,
                }))
            }
            _ => None,
        }
    }

    fn member(&mut self, p: P) -> Option<Member> {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let (meta, name) = self.meta(&mut it);
        let name = self.ident(name?);
        let value = self.int(it.next()?);
        Some(Member {
            meta,
            name,
            value,
            span,
        })
    }

    fn type_ref(&mut self, p: P) -> TypeRef {
        let span = self.span(&p);
        let inner = p.into_inner().next().expect("type_ref has one child");
        match inner.as_rule() {
            Rule::array_type => {
                let mut it = inner.into_inner();
                let elem = self.type_ref(it.next().expect("array element type"));
                let len = self.int(it.next().expect("array length"));
                TypeRef::Array {
                    elem: Box::new(elem),
                    len,
                    span,
                }
            }
            _ => {
                let mut it = inner.into_inner();
                let name = self.ident(it.next().expect("type name"));
                let unit = it.nth(1).map(|u| self.ident(u));
                TypeRef::Named { name, unit, span }
            }
        }
    }

    fn params(&mut self, p: P) -> Vec<Param> {
        p.into_inner()
            .map(|param| {
                let mut it = param.into_inner();
                let name = self.ident(it.next().expect("param name"));
                let ty = self.type_ref(it.next().expect("param type"));
                Param { name, ty }
            })
            .collect()
    }

    fn group(&mut self, p: P, meta: Meta) -> Option<Group> {
        let span = self.span(&p);
        let mut it = p.into_inner().skip(1);
        let name = self.ident(it.next()?);
        let mut ops = Vec::new();
        for item in it {
            let mut inner = item.into_inner();
            let (op_meta, body) = self.meta(&mut inner);
            let body = body?;
            if body.as_rule() == Rule::group_other {
                self.unknown(body, "item in group", &["op"]);
                continue;
            }
            if let Some(op) = self.op(body, op_meta) {
                ops.push(op);
            }
        }
        Some(Group {
            meta,
            name,
            ops,
            span,
        })
    }

    fn op(&mut self, p: P, meta: Meta) -> Option<Op> {
        let span = self.span(&p);
        let mut it = p.into_inner().skip(1);
        let name = self.ident(it.next()?);
        let mut params = Vec::new();
        let mut result = None;
        let mut stmts = Vec::new();
        for child in it {
            match child.as_rule() {
                Rule::params => params = self.params(child),
                Rule::type_ref => result = Some(self.type_ref(child)),
                Rule::op_stmt => {
                    let stmt = child.into_inner().next()?;
                    let sspan = self.span(&stmt);
                    match stmt.as_rule() {
                        Rule::hot_stmt => stmts.push(OpStmt::Hot(sspan)),
                        Rule::required_stmt => stmts.push(OpStmt::Required(sspan)),
                        Rule::unsafe_stmt => {
                            let contract = self.string(stmt.into_inner().nth(1)?);
                            stmts.push(OpStmt::Unsafe(contract, sspan));
                        }
                        Rule::context_stmt => {
                            let c = self.ident(stmt.into_inner().nth(1)?);
                            stmts.push(OpStmt::Context(c, sspan));
                        }
                        Rule::native_stmt => {
                            let form = stmt.into_inner().nth(1)?;
                            let arg = form.clone().into_inner().nth(1)?;
                            let native = match form.as_rule() {
                                Rule::native_asm => Native::Asm(self.string(arg)),
                                _ => {
                                    // `routine NAME uses A, B`: the used ops
                                    // follow the `uses` keyword.
                                    let uses =
                                        form.into_inner().skip(3).map(|i| self.ident(i)).collect();
                                    Native::Routine(self.ident(arg), uses)
                                }
                            };
                            stmts.push(OpStmt::Native(native, sspan));
                        }
                        Rule::op_errors_stmt => {
                            let kinds = stmt.into_inner().skip(1).map(|k| self.ident(k)).collect();
                            stmts.push(OpStmt::Errors(kinds, sspan));
                        }
                        _ => self.unknown(
                            stmt,
                            "op statement",
                            &["hot", "required", "unsafe", "context", "native", "errors"],
                        ),
                    }
                }
                _ => {}
            }
        }
        Some(Op {
            meta,
            name,
            params,
            result,
            stmts,
            span,
        })
    }

    fn path(&self, p: P) -> Path {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let base = self.ident(it.next().expect("path base"));
        let member = it.next().map(|m| self.ident(m));
        Path { base, member, span }
    }

    fn requires(&self, p: Option<P>) -> Vec<Ident> {
        p.map(|r| r.into_inner().skip(1).map(|f| self.ident(f)).collect())
            .unwrap_or_default()
    }

    fn hypervisor(&mut self, p: P, meta: Meta) -> Option<Hypervisor> {
        let span = self.span(&p);
        let mut it = p.into_inner().skip(1);
        let name = self.ident(it.next()?);
        let display = self.string(it.next()?);
        let mut items = Vec::new();
        for item in it {
            let mut inner = item.into_inner();
            let (meta, body) = self.meta(&mut inner);
            let body = body?;
            if let Some(hv_item) = self.hv_item(body, meta) {
                items.push(hv_item);
            }
        }
        Some(Hypervisor {
            meta,
            name,
            display,
            items,
            inherited: Vec::new(),
            span,
        })
    }

    fn hv_item(&mut self, p: P, meta: Meta) -> Option<HvItem> {
        let span = self.span(&p);
        Some(match p.as_rule() {
            Rule::abi_decl => HvItem::Abi(AbiRef {
                meta,
                name: self.ident(p.into_inner().nth(1)?),
                span,
            }),
            Rule::detect_block => self.hv_detect(p, meta, span)?,
            Rule::convention_block => {
                let mut stmts = Vec::new();
                for stmt in p.into_inner().skip(1) {
                    if let Some(s) = self.conv_stmt(stmt.into_inner().next()?) {
                        stmts.push(s);
                    }
                }
                HvItem::Convention(Convention { meta, stmts, span })
            }
            Rule::leaf_decl => self.hv_leaf(p, meta, span)?,
            Rule::features_decl => {
                let mut it = p.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let register = self.path(it.next()?);
                let bits = it.filter_map(|m| self.member(m)).collect();
                HvItem::Features(Features {
                    meta,
                    name,
                    register,
                    bits,
                    span,
                })
            }
            Rule::msr_decl => self.hv_msr(p, meta, span)?,
            Rule::const_decl => {
                let mut it = p.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let ty = self.type_ref(it.next()?);
                let value = self.int(it.next()?);
                HvItem::Const(Const {
                    meta,
                    name,
                    ty,
                    value,
                    span,
                })
            }
            Rule::hypercall_decl => self.hv_hypercall(p, meta, span)?,
            Rule::error_decl => {
                let mut it = p.into_inner().skip(1);
                let name = self.ident(it.next()?);
                let code = self.int(it.next()?);
                let kind = self.ident(it.next()?);
                HvItem::Error(HvError {
                    meta,
                    name,
                    code,
                    kind,
                    span,
                })
            }
            Rule::map_decl => {
                let mut it = p.into_inner().skip(1).peekable();
                let op = self.ident(it.next()?);
                let like = match it.peek() {
                    Some(l) if l.as_rule() == Rule::map_like => {
                        let name = l.clone().into_inner().nth(1)?;
                        Some(self.ident(name))
                    }
                    _ => None,
                };
                let mut steps = Vec::new();
                let mut inline = Vec::new();
                for step in it.filter(|s| s.as_rule() == Rule::map_step) {
                    let Some(step) = step.into_inner().next() else {
                        continue;
                    };
                    if step.as_rule() == Rule::step_inline {
                        inline.extend(step.into_inner().nth(1).map(|s| self.string(s)));
                    } else {
                        steps.extend(self.step(step));
                    }
                }
                HvItem::Map(Map {
                    meta,
                    op,
                    steps,
                    like,
                    inline,
                    span,
                })
            }
            Rule::hv_other => {
                self.unknown(
                    p,
                    "hypervisor item",
                    &[
                        "abi",
                        "detect",
                        "convention",
                        "leaf",
                        "features",
                        "msr",
                        "const",
                        "hypercall",
                        "error",
                        "map",
                        "newtype",
                        "flags",
                        "enum",
                        "struct",
                    ],
                );
                return None;
            }
            _ => HvItem::Type(self.type_decl(p, meta)?),
        })
    }

    /// `detect { … }`: signatures and probes.
    fn hv_detect(&mut self, p: P, meta: Meta, span: Span) -> Option<HvItem> {
        let mut signatures = Vec::new();
        let mut probes = Vec::new();
        let mut entries = Vec::new();
        for stmt in p.into_inner().skip(1) {
            let s = stmt.into_inner().next()?;
            match s.as_rule() {
                Rule::signature_stmt => signatures.push(self.string(s.into_inner().nth(1)?)),
                Rule::probe_stmt => probes.push(self.ident(s.into_inner().nth(1)?)),
                Rule::entry_stmt => entries.push(self.ident(s.into_inner().nth(1)?)),
                _ => self.unknown(s, "detect statement", &["signature", "probe", "entry"]),
            }
        }
        Some(HvItem::Detect(Detect {
            meta,
            signatures,
            probes,
            entries,
            span,
        }))
    }

    /// `leaf NAME = ADDRESS { registers }`.
    fn hv_leaf(&mut self, p: P, meta: Meta, span: Span) -> Option<HvItem> {
        let mut it = p.into_inner().skip(1);
        let name = self.ident(it.next()?);
        let address = self.int(it.next()?);
        let registers = it
            .filter_map(|r| {
                let rspan = self.span(&r);
                let mut ri = r.into_inner();
                let (meta, name) = self.meta(&mut ri);
                let name = self.ident(name?);
                let ty = self.type_ref(ri.next()?);
                Some(LeafReg {
                    meta,
                    name,
                    ty,
                    span: rspan,
                })
            })
            .collect();
        Some(HvItem::Leaf(Leaf {
            meta,
            name,
            address,
            registers,
            span,
        }))
    }

    /// `msr NAME = INDEX: TYPE requires …;`.
    fn hv_msr(&mut self, p: P, meta: Meta, span: Span) -> Option<HvItem> {
        let mut it = p.into_inner().skip(1);
        let name = self.ident(it.next()?);
        let index = self.int(it.next()?);
        let mut ty = None;
        let mut requires = Vec::new();
        for rest in it {
            match rest.as_rule() {
                Rule::type_ref => ty = Some(self.type_ref(rest)),
                _ => requires = self.requires(Some(rest)),
            }
        }
        Some(HvItem::Msr(Msr {
            meta,
            name,
            index,
            ty,
            requires,
            span,
        }))
    }

    /// `hypercall NAME = NUMBER [fast|rep] (params) -> result requires …;`.
    fn hv_hypercall(&mut self, p: P, meta: Meta, span: Span) -> Option<HvItem> {
        let mut it = p.into_inner().skip(1);
        let name = self.ident(it.next()?);
        let number = self.int(it.next()?);
        let mut fast = false;
        let mut rep = false;
        let mut params = Vec::new();
        let mut result = None;
        let mut requires = Vec::new();
        for rest in it {
            match rest.as_rule() {
                Rule::fast => fast = true,
                Rule::rep => rep = true,
                Rule::params => params = self.params(rest),
                Rule::named_results => {
                    let named = rest
                        .into_inner()
                        .map(|param| {
                            let mut pi = param.into_inner();
                            let name = self.ident(pi.next().expect("result name"));
                            let ty = self.type_ref(pi.next().expect("result type"));
                            Param { name, ty }
                        })
                        .collect();
                    result = Some(HcResult::Named(named));
                }
                Rule::type_ref => result = Some(HcResult::Single(self.type_ref(rest))),
                _ => requires = self.requires(Some(rest)),
            }
        }
        Some(HvItem::Hypercall(Hypercall {
            meta,
            name,
            number,
            fast,
            rep,
            params,
            result,
            requires,
            span,
        }))
    }

    fn conv_stmt(&mut self, p: P) -> Option<ConvStmt> {
        let span = self.span(&p);
        let rule = p.as_rule();
        if rule == Rule::conv_other {
            self.unknown(
                p,
                "convention statement",
                &[
                    "instruction",
                    "page",
                    "number",
                    "args",
                    "result",
                    "fixed",
                    "clobbers",
                    "fast_bit",
                    "rep_shift",
                    "status",
                    "choose",
                ],
            );
            return None;
        }
        let mut it = p.into_inner().skip(1);
        let regs = |b: &Builder, p: Option<P>| -> Vec<Ident> {
            p.map(|l| l.into_inner().map(|r| b.ident(r)).collect())
                .unwrap_or_default()
        };
        Some(match rule {
            Rule::instruction_stmt => {
                ConvStmt::Instruction(it.map(|i| self.ident(i)).collect(), span)
            }
            Rule::page_stmt => {
                let path = self.path(it.next()?);
                let stride = self.int(it.nth(1)?);
                ConvStmt::Page(path, stride, span)
            }
            Rule::number_stmt => ConvStmt::Number(self.ident(it.next()?), span),
            Rule::args_stmt => ConvStmt::Args(regs(self, it.next()), span),
            Rule::result_stmt => ConvStmt::Result(regs(self, it.next()), span),
            Rule::clobbers_stmt => ConvStmt::Clobbers(regs(self, it.next()), span),
            Rule::fixed_stmt => ConvStmt::Fixed(
                it.map(|f| {
                    let mut fi = f.into_inner();
                    let reg = self.ident(fi.next().expect("fixed register"));
                    let value = self.int(fi.next().expect("fixed value"));
                    let form = fi.nth(1).map(|w| self.ident(w));
                    FixedReg { reg, value, form }
                })
                .collect(),
                span,
            ),
            Rule::fast_bit_stmt => ConvStmt::FastBit(self.int(it.next()?), span),
            Rule::rep_shift_stmt => ConvStmt::RepShift(self.int(it.next()?), span),
            Rule::status_stmt => ConvStmt::Status(self.ident(it.next()?), span),
            Rule::choose_stmt => ConvStmt::Choose(
                it.map(|c| {
                    let mut ci = c.into_inner();
                    let form = self.ident(ci.next().expect("chosen form"));
                    let cond = ci.nth(1).expect("choice condition");
                    let when = match cond.as_rule() {
                        Rule::vendor_cond => ChoiceCond::Vendor(
                            cond.into_inner().skip(1).map(|s| self.string(s)).collect(),
                        ),
                        _ => ChoiceCond::Feature(self.ident(cond)),
                    };
                    Choice { form, when }
                })
                .collect(),
                span,
            ),
            _ => return None,
        })
    }

    fn step(&mut self, p: P) -> Option<Step> {
        let span = self.span(&p);
        let rule = p.as_rule();
        if rule == Rule::map_other {
            self.unknown(
                p,
                "mapping step",
                &[
                    "hypercall",
                    "msr",
                    "shared",
                    "cpuid",
                    "routine",
                    "nop",
                    "native",
                    "inline",
                ],
            );
            return None;
        }
        let mut requires = Vec::new();
        let mut guard = None;
        let mut rest = Vec::new();
        for child in p.into_inner().skip(1) {
            if child.as_rule() == Rule::step_tail {
                for t in child.into_inner() {
                    match t.as_rule() {
                        Rule::requires => requires = self.requires(Some(t)),
                        _ => {
                            let mut g = t.into_inner().skip(1);
                            let param = self.ident(g.next()?);
                            let variant = self.ident(g.next()?);
                            guard = Some(Guard { param, variant });
                        }
                    }
                }
            } else {
                rest.push(child);
            }
        }
        let mut it = rest.into_iter();
        let kind = match rule {
            Rule::step_hypercall => {
                let name = self.ident(it.next()?);
                StepKind::Hypercall(name, it.map(|e| self.expr(e)).collect())
            }
            Rule::step_msr => {
                let name = self.ident(it.next()?);
                match it.next() {
                    Some(e) if e.as_rule() == Rule::expr => StepKind::MsrWrite(name, self.expr(e)),
                    Some(a) => {
                        StepKind::MsrRead(name, a.into_inner().nth(1).map(|u| self.ident(u)))
                    }
                    None => StepKind::MsrRead(name, None),
                }
            }
            Rule::step_shared => {
                let path = self.path(it.next()?);
                let mut next = it.next()?;
                let mut unit = None;
                if next.as_rule() == Rule::as_unit {
                    unit = next.clone().into_inner().nth(1).map(|u| self.ident(u));
                    next = it.next()?;
                }
                let source = if next.as_rule() == Rule::kw_from {
                    let platform = it.next()?;
                    Source::Platform(self.span(&platform))
                } else {
                    Source::Via(self.ident(it.next()?))
                };
                StepKind::Shared(path, unit, source)
            }
            Rule::step_routine => StepKind::Routine(self.ident(it.next()?)),
            Rule::step_cpuid => {
                let path = self.path(it.next()?);
                let unit = it
                    .next()
                    .and_then(|a| a.into_inner().nth(1))
                    .map(|u| self.ident(u));
                StepKind::Cpuid(path, unit)
            }
            Rule::step_nop => StepKind::Nop,
            _ => StepKind::Native,
        };
        Some(Step {
            kind,
            requires,
            guard,
            span,
        })
    }

    fn expr(&mut self, p: P) -> Expr {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let atom = it.next().expect("expr has an atom");
        let value = match atom.as_rule() {
            Rule::int => Expr::Int(self.int(atom)),
            Rule::struct_lit => {
                let aspan = self.span(&atom);
                let mut si = atom.into_inner();
                let name = self.ident(si.next().expect("struct literal name"));
                let fields = si
                    .map(|f| {
                        let mut fi = f.into_inner();
                        let field = self.ident(fi.next().expect("field name"));
                        let value = self.expr(fi.next().expect("field value"));
                        (field, value)
                    })
                    .collect();
                Expr::Struct(name, fields, aspan)
            }
            Rule::member_ref => {
                let aspan = self.span(&atom);
                let mut mi = atom.into_inner();
                let base = self.ident(mi.next().expect("member base"));
                let member = self.ident(mi.next().expect("member name"));
                Expr::Member(base, member, aspan)
            }
            Rule::each_ref => {
                let aspan = self.span(&atom);
                let param = self.ident(atom.into_inner().nth(1).expect("each names a parameter"));
                Expr::Each(param, aspan)
            }
            _ => Expr::Name(self.ident(atom)),
        };
        match it.next() {
            Some(as_unit) => {
                let unit = self.ident(as_unit.into_inner().nth(1).expect("as has a unit"));
                Expr::As(Box::new(value), unit, span)
            }
            None => value,
        }
    }
}

/// The known word closest to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = if ca == *cb { 0 } else { 1 };
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
