//! `idl/abi.lock`: the interface's ABI facts as released, written by
//! `pvi lock` and committed. Like a syscall table, a released number or
//! layout does not change: `pvi check` fails when the IDL contradicts the
//! lock while still claiming the lock's version.
//!
//! The file is text, one fact a line under the version it arrived in:
//!
//! ```text
//! interface pvi 0.1.0
//!
//! [0.1]
//! kvm hypercall KVM_HC_KICK_CPU = 5
//! ```

use crate::abi::{facts, Fact};
use crate::diagnostic::Diagnostic;
use crate::model::Model;
use std::collections::BTreeMap;

/// The lock file's name, beside the `.pvi` files.
pub const FILE_NAME: &str = "abi.lock";

/// The lock file's opening comment.
pub const HEADER: &str = "\
# The released ABI of this interface, written by `pvi lock`: do not edit.
# `pvi check` fails when the IDL changes a fact below without a version
# bump; after a bump, run `pvi lock` and commit this file with the IDL.
";

/// A lock file, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The interface name.
    pub interface: String,
    /// The interface version the lock was written for.
    pub version: String,
    /// The facts, in file order.
    pub entries: Vec<Entry>,
}

/// One locked fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The fact's key.
    pub key: String,
    /// Its value (empty for a fact that is only present).
    pub value: String,
    /// The version section it is under.
    pub since: (u64, u64),
    /// Its line's byte range in the file.
    pub span: (usize, usize),
}

/// Why a lock file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

fn version_key(since: Option<(u64, u64)>, base: (u64, u64)) -> (u64, u64) {
    since.unwrap_or(base)
}

/// The lock file of `model`. Op ids come from `previous` (the lock being
/// replaced): an op keeps the id it was given, a new op gets the next free
/// one, so ids are never reused or shuffled, whatever the IDL's order.
pub fn render(model: &Model, previous: Option<&Lock>) -> String {
    let base = model.baseline();
    let locked_ids: BTreeMap<&str, u64> = previous
        .map(|lock| {
            lock.entries
                .iter()
                .filter_map(|e| Some((e.key.as_str(), e.value.strip_prefix("id ")?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut next_id = locked_ids.values().max().map_or(0, |m| m + 1);
    let mut by_version: BTreeMap<(u64, u64), Vec<Fact>> = BTreeMap::new();
    for mut fact in facts(model) {
        if fact.kind == crate::abi::Kind::Op {
            let id = locked_ids
                .get(fact.key.as_str())
                .copied()
                .unwrap_or_else(|| {
                    next_id += 1;
                    next_id - 1
                });
            fact.value = format!("id {id}");
        }
        by_version
            .entry(version_key(fact.since, base))
            .or_default()
            .push(fact);
    }
    let mut out = String::from(HEADER);
    out.push_str(&format!(
        "\ninterface {} {}\n",
        model.interface.name.name, model.interface.version.text
    ));
    for ((major, minor), facts) in by_version {
        out.push_str(&format!("\n[{major}.{minor}]\n"));
        for f in facts {
            if f.value.is_empty() {
                out.push_str(&format!("{}\n", f.key));
            } else {
                out.push_str(&format!("{} = {}\n", f.key, f.value));
            }
        }
    }
    out
}

/// Read a lock file.
pub fn parse(text: &str) -> Result<Lock, ParseError> {
    let mut lock = Lock {
        interface: String::new(),
        version: String::new(),
        entries: Vec::new(),
    };
    let mut section: Option<(u64, u64)> = None;
    let mut seen = std::collections::BTreeSet::new();
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += raw.len();
        let error = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let line = raw.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("interface ") {
            let mut words = rest.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(name), Some(version), None) => {
                    lock.interface = name.to_string();
                    lock.version = version.to_string();
                }
                _ => return Err(error("expected `interface NAME VERSION`".into())),
            }
        } else if let Some(version) = line.strip_prefix('[') {
            let parsed = version.strip_suffix(']').and_then(|v| {
                let (major, minor) = v.split_once('.')?;
                Some((major.parse().ok()?, minor.parse().ok()?))
            });
            match parsed {
                Some(v) => section = Some(v),
                None => return Err(error("a version section is `[MAJOR.MINOR]`".into())),
            }
        } else {
            let Some(since) = section else {
                return Err(error(
                    "a fact before the first `[MAJOR.MINOR]` section".into(),
                ));
            };
            let (key, value) = line.split_once(" = ").unwrap_or((line, ""));
            if !seen.insert(key.to_string()) {
                return Err(error(format!("`{key}` is locked twice")));
            }
            lock.entries.push(Entry {
                key: key.to_string(),
                value: value.to_string(),
                since,
                span: (start, start + line.len()),
            });
        }
    }
    if lock.interface.is_empty() {
        return Err(ParseError {
            line: 1,
            message: "no `interface NAME VERSION` line".into(),
        });
    }
    Ok(lock)
}

/// Where `model` contradicts `lock` while claiming the lock's version: a
/// changed or vanished fact is an error at the fact (or the interface
/// declaration, for a vanished one). Under another version the lock is
/// merely stale, which the freshness test reports.
pub fn check(model: &Model, lock: &Lock) -> Vec<Diagnostic> {
    if model.interface.version.text != lock.version {
        return Vec::new();
    }
    let hint = format!(
        "interface {} {} is released: add a new item instead of changing this one, \
         or bump the version in `interface {} …;` (the major version for a breaking change) and run `pvi lock`",
        lock.interface, lock.version, lock.interface
    );
    let current: BTreeMap<String, Fact> = facts(model)
        .into_iter()
        .map(|f| (f.key.clone(), f))
        .collect();
    let mut out = Vec::new();
    for Entry {
        key, value: locked, ..
    } in &lock.entries
    {
        match current.get(key) {
            // An op's locked id is the lock's numbering: only presence counts.
            Some(fact) if fact.kind == crate::abi::Kind::Op => {}
            Some(fact) if &fact.value == locked => {}
            Some(fact) => out.push(
                Diagnostic::new(
                    "abi-lock",
                    fact.span,
                    format!(
                        "`{key}` is `{}` here but `{locked}` in {FILE_NAME} (interface {})",
                        fact.value, lock.version
                    ),
                )
                .label("changes a released fact")
                .hint(hint.clone()),
            ),
            None => out.push(
                Diagnostic::new(
                    "abi-lock",
                    model.interface.name.span,
                    format!(
                        "`{key}` is locked in {FILE_NAME} (interface {}) but gone from the IDL",
                        lock.version
                    ),
                )
                .label("this version is released")
                .hint(hint.clone()),
            ),
        }
    }
    out
}

/// Where the lock of the interface in `paths` lives: `abi.lock` in the
/// directory given, or beside the first file given.
pub fn path_for(paths: &[std::path::PathBuf]) -> Option<std::path::PathBuf> {
    let first = paths.first()?;
    let dir = if first.is_dir() {
        first.as_path()
    } else {
        first.parent()?
    };
    Some(dir.join(FILE_NAME))
}

/// The lock at `path`, if it exists and reads.
pub fn read(path: &std::path::Path) -> Option<Lock> {
    parse(&std::fs::read_to_string(path).ok()?).ok()
}

/// Check `model` against the lock beside `paths`, if there is one: the
/// contradictions, or why the lock could not be read.
pub fn check_paths(model: &Model, paths: &[std::path::PathBuf]) -> Result<Vec<Diagnostic>, String> {
    let Some(path) = path_for(paths) else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let lock = parse(&text).map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.message))?;
    Ok(check(model, &lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_reads_back_what_render_wrote() {
        let idl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
        let (_, model) = crate::check_paths(&[idl]).expect("idl/ is readable");
        let model = model.expect("idl/ checks");
        let text = render(&model, None);
        let lock = parse(&text).expect("parses");
        assert_eq!(lock.interface, model.interface.name.name);
        assert_eq!(lock.version, model.interface.version.text);
        assert!(check(&model, &lock).is_empty());
        assert_eq!(lock.entries.len(), facts(&model).len());
    }

    #[test]
    fn malformed_locks_say_which_line() {
        assert_eq!(parse("interface t\n").unwrap_err().line, 1);
        assert_eq!(
            parse("interface t 1.0.0\nop x = id 0\n").unwrap_err().line,
            2
        );
        assert_eq!(
            parse("interface t 1.0.0\n[1.0]\nop x = id 0\nop x = id 1\n")
                .unwrap_err()
                .line,
            4
        );
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn ops_keep_their_locked_ids_and_new_ones_get_the_next() {
        let idl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
        let (_, model) = crate::check_paths(&[idl]).expect("idl/ is readable");
        let model = model.expect("idl/ checks");
        let mut previous = parse(&render(&model, None)).unwrap();
        let ops: Vec<usize> = (0..previous.entries.len())
            .filter(|&i| previous.entries[i].value.starts_with("id "))
            .collect();
        // The first op was locked with a high id; the second never was.
        previous.entries[ops[0]].value = "id 40".into();
        let first = previous.entries[ops[0]].key.clone();
        let second = previous.entries.remove(ops[1]).key;
        let again = parse(&render(&model, Some(&previous))).unwrap();
        let id = |key: &str| {
            again
                .entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
        };
        assert_eq!(id(&first).as_deref(), Some("id 40"));
        assert_eq!(id(&second).as_deref(), Some("id 41"));
    }
}
