//! The compatibility catalog: every `tests/compat/*.edit` is one edit of
//! the real interface in `idl/` and the exact rules `pvi compat` must
//! classify it by. The catalog must hold at least 25 breaking and 15
//! compatible edits.
//!
//! A case file:
//!
//! ```text
//! # Why: one line.
//! expect breaking number-changed
//! in kvm.pvi
//! - hypercall KVM_HC_KICK_CPU = 5 (
//! + hypercall KVM_HC_KICK_CPU = 6 (
//! ```
//!
//! `expect CLASS RULE` lines (one per change, repeated for several of the
//! same rule) give the changes; `in FILE` starts an edit of that file, whose
//! `-` lines (joined by newlines) must occur exactly once and are replaced
//! by its `+` lines. `create FILE` starts a new file made of `+` lines;
//! `delete FILE` removes one.

use pvi_codegen::abi::Abi;
use pvi_codegen::compat::{compare, verdict, Class, Verdict, RULES};
use pvi_codegen::model::Model;
use pvi_codegen::SourceMap;
use std::collections::BTreeMap;
use std::fs;

/// One edit of one file.
struct Edit {
    file: String,
    create: bool,
    delete: bool,
    find: Vec<String>,
    replace: Vec<String>,
}

struct Case {
    name: String,
    expect: Vec<(String, String)>,
    edits: Vec<Edit>,
}

fn parse_case(name: &str, text: &str) -> Case {
    let mut case = Case {
        name: name.to_string(),
        expect: Vec::new(),
        edits: Vec::new(),
    };
    for line in text.lines() {
        let body = |prefix: &str| {
            line.strip_prefix(prefix)
                .map(|r| r.strip_prefix(' ').unwrap_or(r).to_string())
        };
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else if let Some(rest) = line.strip_prefix("expect ") {
            let (class, rule) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}: `expect CLASS RULE`, got `{line}`"));
            case.expect.push((class.to_string(), rule.to_string()));
        } else if let Some(file) = line.strip_prefix("in ") {
            case.edits.push(Edit {
                file: file.to_string(),
                create: false,
                delete: false,
                find: Vec::new(),
                replace: Vec::new(),
            });
        } else if let Some(file) = line.strip_prefix("create ") {
            case.edits.push(Edit {
                file: file.to_string(),
                create: true,
                delete: false,
                find: Vec::new(),
                replace: Vec::new(),
            });
        } else if let Some(file) = line.strip_prefix("delete ") {
            case.edits.push(Edit {
                file: file.to_string(),
                create: false,
                delete: true,
                find: Vec::new(),
                replace: Vec::new(),
            });
        } else if let Some(text) = body("-") {
            let edit = case
                .edits
                .last_mut()
                .unwrap_or_else(|| panic!("{name}: `-` before `in FILE`"));
            edit.find.push(text);
        } else if let Some(text) = body("+") {
            let edit = case
                .edits
                .last_mut()
                .unwrap_or_else(|| panic!("{name}: `+` before `in FILE`"));
            edit.replace.push(text);
        } else {
            panic!("{name}: cannot read `{line}`");
        }
    }
    assert!(!case.expect.is_empty(), "{name}: no `expect` line");
    assert!(!case.edits.is_empty(), "{name}: no edit");
    case
}

/// The real interface's files, by name.
fn interface() -> BTreeMap<String, String> {
    pvi_tests::idl_files()
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn apply(case: &Case, files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = files.clone();
    for edit in &case.edits {
        if edit.delete {
            assert!(
                out.remove(&edit.file).is_some(),
                "{}: no idl/{}",
                case.name,
                edit.file
            );
            continue;
        }
        if edit.create {
            out.insert(edit.file.clone(), edit.replace.join("\n") + "\n");
            continue;
        }
        let text = out
            .get_mut(&edit.file)
            .unwrap_or_else(|| panic!("{}: no idl/{}", case.name, edit.file));
        let find = edit.find.join("\n");
        let found = text.matches(&find).count();
        assert_eq!(
            found, 1,
            "{}: the `-` text occurs {found} times in idl/{}, not once:\n{find}",
            case.name, edit.file
        );
        *text = text.replacen(&find, &edit.replace.join("\n"), 1);
    }
    out
}

fn abi(name: &str, files: &BTreeMap<String, String>) -> Result<Abi, String> {
    model(name, files).map(|m| Abi::of(&m))
}

fn model(name: &str, files: &BTreeMap<String, String>) -> Result<Model, String> {
    let mut sources = SourceMap::new();
    let ids: Vec<_> = files
        .iter()
        .map(|(file, text)| sources.add(format!("{name}/{file}"), text.clone()))
        .collect();
    match pvi_codegen::check_sources(&sources, &ids) {
        Ok(model) => Ok(model),
        Err(diags) => {
            let text: String = diags.iter().map(|d| d.render(&sources, false)).collect();
            Err(format!(
                "{name}: the edited interface does not check:\n{text}"
            ))
        }
    }
}

fn cases() -> Vec<Case> {
    let dir = pvi_tests::root().join("tests/compat");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "edit"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            parse_case(&name, &fs::read_to_string(p).unwrap())
        })
        .collect()
}

#[test]
fn every_catalogued_edit_is_classified_exactly() {
    let base = interface();
    let old = abi("idl", &base).unwrap();
    let mut failures = Vec::new();
    for case in cases() {
        let new = match abi(&case.name, &apply(&case, &base)) {
            Ok(new) => new,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let changes = compare(&old, &new);
        let mut got: Vec<(String, String)> = changes
            .iter()
            .map(|c| (c.class.word().to_string(), c.rule.to_string()))
            .collect();
        got.sort();
        let mut want = case.expect.clone();
        want.sort();
        if got != want {
            let detail: Vec<String> = changes
                .iter()
                .map(|c| format!("  {} {}: {}", c.class.word(), c.rule, c.message))
                .collect();
            failures.push(format!(
                "{}: expected {want:?}, got {got:?}\n{}",
                case.name,
                detail.join("\n")
            ));
            continue;
        }
        let breaking = want.iter().any(|(c, _)| c == "breaking");
        let v = verdict(&old, &new, &changes);
        let ok = if breaking {
            v != Verdict::Compatible
        } else {
            v == Verdict::Compatible
        };
        if !ok {
            failures.push(format!("{}: verdict {v:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_catalog_has_enough_of_each_class_and_names_only_real_rules() {
    let cases = cases();
    let breaking = cases
        .iter()
        .filter(|c| c.expect.iter().any(|(class, _)| class == "breaking"))
        .count();
    let compatible = cases.len() - breaking;
    assert!(
        breaking >= 25,
        "{breaking} breaking edits, at least 25 wanted"
    );
    assert!(
        compatible >= 15,
        "{compatible} compatible edits, at least 15 wanted"
    );
    for case in &cases {
        for (class, rule) in &case.expect {
            let known = RULES
                .iter()
                .find(|(r, _, _)| r == rule)
                .unwrap_or_else(|| panic!("{}: no rule `{rule}`", case.name));
            assert_eq!(
                class,
                known.1.word(),
                "{}: `{rule}` is {}",
                case.name,
                known.1.word()
            );
        }
    }
}

#[test]
fn a_major_bump_allows_breaking_changes_and_nothing_else_does() {
    let base = interface();
    let old = abi("idl", &base).unwrap();
    let bump = |from: &str, to: &str| {
        let mut files = base.clone();
        let text = files.get_mut("pvi.pvi").unwrap();
        *text = text.replacen(from, to, 1);
        let kvm = files.get_mut("kvm.pvi").unwrap();
        *kvm = kvm.replacen(
            "hypercall KVM_HC_KICK_CPU = 5 (",
            "hypercall KVM_HC_KICK_CPU = 6 (",
            1,
        );
        files
    };
    // The interface's own version, whatever it is today: 0.MINOR.PATCH.
    let declared = base["pvi.pvi"]
        .lines()
        .find_map(|l| l.strip_prefix("interface pvi "))
        .and_then(|v| v.strip_suffix(';'))
        .unwrap()
        .to_string();
    let parts: Vec<u32> = declared.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts[0], 0, "this test knows 0.x versions only");
    let now = format!("interface pvi {declared};");
    // 0.x: the minor version is the major one, as in Cargo.
    let next_minor = format!("0.{}.0", parts[1] + 1);
    let minor = abi(
        &format!("0.{}", parts[1] + 1),
        &bump(&now, &format!("interface pvi {next_minor};")),
    )
    .unwrap();
    let changes = compare(&old, &minor);
    assert_eq!(
        verdict(&old, &minor, &changes),
        Verdict::BreakingWithMajorBump
    );
    let next_patch = format!("0.{}.{}", parts[1], parts[2] + 1);
    let patch = abi(
        &next_patch,
        &bump(&now, &format!("interface pvi {next_patch};")),
    )
    .unwrap();
    let changes = compare(&old, &patch);
    assert_eq!(verdict(&old, &patch, &changes), Verdict::Breaking);
}

#[test]
fn the_lock_file_and_the_idl_it_was_written_from_compare_equal() {
    let base = interface();
    let old = abi("idl", &base).unwrap();
    let text = fs::read_to_string(pvi_tests::root().join("idl/abi.lock")).unwrap();
    let lock = pvi_codegen::lock::parse(&text).unwrap();
    let mut sources = SourceMap::new();
    let id = sources.add("idl/abi.lock", text.clone());
    let locked = Abi::from_lock(&lock, id);
    let changes = compare(&locked, &old);
    let listed: Vec<String> = changes.iter().map(|c| c.message.clone()).collect();
    assert!(listed.is_empty(), "{}", listed.join("\n"));
    assert_eq!(locked.facts.len(), old.facts.len());
}

/// The fingerprint, the lock and `pvi compat` read one fact set: every
/// catalogued edit that changes an ABI fact moves all three, and an edit
/// only of docs or of `@deprecated` (which are not ABI) moves neither the
/// fingerprint nor the lock.
#[test]
fn the_fingerprint_the_lock_and_compat_see_the_same_facts() {
    let base = interface();
    let old = model("idl", &base).unwrap();
    let lock_text = fs::read_to_string(pvi_tests::root().join("idl/abi.lock")).unwrap();
    let locked = pvi_codegen::lock::parse(&lock_text).unwrap();
    let old_lock = pvi_codegen::lock::render(&old, Some(&locked));
    let old_print = pvi_codegen::gen::fingerprint(&old);
    let mut failures = Vec::new();
    let mut perturbed = 0;
    for case in cases() {
        let new = match model(&case.name, &apply(&case, &base)) {
            Ok(new) => new,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let (old_abi, new_abi) = (Abi::of(&old), Abi::of(&new));
        let changes = compare(&old_abi, &new_abi);
        // A version bump is part of what compat judges (its verdict), and
        // of the lock and fingerprint.
        let abi_changed = old_abi.version != new_abi.version
            || changes
                .iter()
                .any(|c| c.class != Class::DocsOnly && c.rule != "deprecated");
        let print_moved = pvi_codegen::gen::fingerprint(&new) != old_print;
        let lock_moved = pvi_codegen::lock::render(&new, Some(&locked)) != old_lock;
        perturbed += usize::from(abi_changed);
        if (abi_changed, abi_changed) != (print_moved, lock_moved) {
            failures.push(format!(
                "{}: compat sees an ABI change: {abi_changed}; the fingerprint moved: \
                 {print_moved}; the lock moved: {lock_moved}",
                case.name
            ));
        }
    }
    assert!(perturbed >= 40, "only {perturbed} edits change a fact");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
