//! The sourced cross-check lists in `tests/upstream/*.tsv`: one value per
//! line, `NAME<TAB>VALUE<TAB>SOURCE`, VALUE written as the upstream source
//! writes it.

use std::fs;

/// What a line says a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// A number (hex, decimal, negative, `GENMASK`, a struct size).
    Number(i128),
    /// `BIT(n)`, `BIT_ULL(n)`, `(1 << n)` or `bit n`: bit n.
    Bit(u32),
}

impl Listed {
    /// Whether a bit number (as feature bits are declared) matches.
    pub fn is_bit(self, position: i128) -> bool {
        match self {
            Listed::Bit(n) => n as i128 == position,
            Listed::Number(n) => n == position,
        }
    }

    /// Whether a value (as constants, MSRs, numbers are declared) matches.
    pub fn is_value(self, value: i128) -> bool {
        match self {
            Listed::Bit(n) => value == 1i128 << n,
            Listed::Number(n) => n == value,
        }
    }
}

/// One line of a list.
#[derive(Debug, Clone)]
pub struct Line {
    /// `file.tsv:N`, for messages.
    pub at: String,
    /// The name; a struct field is `struct.field` (nested C structs flattened
    /// to `struct.inner_field`), a struct's size is `struct#size`.
    pub key: String,
    /// The name as written.
    pub name: String,
    /// The value as written.
    pub raw: String,
    /// The value, if it could be read.
    pub value: Option<Listed>,
}

/// Read a value as upstream headers write it.
pub fn parse_value(v: &str) -> Option<Listed> {
    let v = v.trim();
    for bit in ["BIT(", "BIT_ULL("] {
        if let Some(n) = v.strip_prefix(bit).and_then(|r| r.strip_suffix(')')) {
            return n.trim().parse().ok().map(Listed::Bit);
        }
    }
    if let Some(n) = v.strip_prefix("bit ") {
        return n.trim().parse().ok().map(Listed::Bit);
    }
    if let Some(args) = v
        .strip_prefix("GENMASK_ULL(")
        .or_else(|| v.strip_prefix("GENMASK("))
        .and_then(|r| r.strip_suffix(')'))
    {
        let (high, low) = args.split_once(',')?;
        let (high, low): (u32, u32) = (high.trim().parse().ok()?, low.trim().parse().ok()?);
        let ones = (1i128 << (high - low + 1)) - 1;
        return Some(Listed::Number(ones << low));
    }
    if let Some(inner) = v.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        let Some((one, shift)) = inner.split_once("<<") else {
            return parse_value(inner);
        };
        if one.trim().trim_end_matches(['U', 'L']) == "1" {
            return shift.trim().parse().ok().map(Listed::Bit);
        }
        return None;
    }
    if let Some(size) = v.strip_prefix("size=") {
        return size.parse().ok().map(Listed::Number);
    }
    let (neg, body) = match v.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, v),
    };
    let body = body.trim_end_matches(['U', 'L', 'u', 'l']);
    let n = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => body.parse::<i128>().ok()?,
    };
    Some(Listed::Number(if neg { -n } else { n }))
}

/// `outer.inner.field` (a nested C struct) is declared flat as
/// `outer.inner_field`: the IDL has no struct-typed fields.
fn flatten(name: &str) -> String {
    match name.split_once('.') {
        Some((outer, rest)) => format!("{outer}.{}", rest.replace('.', "_")),
        None => name.to_string(),
    }
}

/// Every list, by stem (`kvm`, `xen`, …), with its lines. Panics on a line
/// that is not three tab-separated fields or has no source.
pub fn lists() -> Vec<(String, Vec<Line>)> {
    let dir = crate::root().join("tests/upstream");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsv"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let lines = fs::read_to_string(path)
                .unwrap()
                .lines()
                .enumerate()
                .map(|(no, line)| {
                    let at = format!("{file}:{}", no + 1);
                    let cols: Vec<&str> = line.split('\t').collect();
                    let [name, raw, source] = cols[..] else {
                        panic!("{at}: expected NAME<TAB>VALUE<TAB>SOURCE")
                    };
                    assert!(!source.trim().is_empty(), "{at}: no source");
                    let key = if raw.starts_with("size=") {
                        format!("{name}#size")
                    } else {
                        flatten(name)
                    };
                    Line {
                        at,
                        key,
                        name: name.to_string(),
                        raw: raw.to_string(),
                        value: parse_value(raw),
                    }
                })
                .collect();
            (
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                lines,
            )
        })
        .collect()
}
