//! The malformed-IDL corpus: one file per distinct mistake in
//! `tests/idl-errors/`, each with the exact report the user sees beside it
//! (`NAME.stderr`: location, source line, caret, message, hint).
//! `PVI_BLESS=1` rewrites the reports; review the diff before committing.

use std::collections::BTreeMap;
use std::fs;

#[test]
fn every_malformed_file_gets_its_exact_diagnostics() {
    let dir = pvi_tests::root().join("tests/idl-errors");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pvi"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "the corpus must hold at least 40 malformed files, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    let mut first_errors: BTreeMap<String, String> = BTreeMap::new();
    for case in &cases {
        let name = format!(
            "tests/idl-errors/{}",
            case.file_name().unwrap().to_string_lossy()
        );
        let (sources, result) = pvi_codegen::check_bytes(&name, &fs::read(case).unwrap());
        let diags = match result {
            Ok(_) => {
                failures.push(format!("{name}: accepted, but it is malformed"));
                continue;
            }
            Err(d) => d,
        };
        assert!(!diags.is_empty(), "{name}: rejected without a diagnostic");
        let rendered: String = diags.iter().map(|d| d.render(&sources, false)).collect();
        // One distinct mistake per file: no two files may open with the same
        // rule and message.
        let key = format!("{}: {}", diags[0].code, diags[0].message);
        if let Some(other) = first_errors.insert(key.clone(), name.clone()) {
            failures.push(format!("{name} and {other} both test `{key}`"));
        }
        failures.extend(matches_expected(
            &name,
            &rendered,
            &case.with_extension("stderr"),
        ));
    }
    for stderr in fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "stderr"))
    {
        if !stderr.with_extension("pvi").exists() && !stderr.with_extension("").is_dir() {
            failures.push(format!(
                "{} has no .pvi (or lock case directory) beside it",
                stderr.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!(
        "{} malformed files, each with its exact diagnostics",
        cases.len()
    );
}

#[test]
fn several_errors_in_one_run_are_all_reported() {
    let text = "interface t 0.1.0;\nnewtype A: u64 in nanos;\nnewtype B: Unknown;\ngroup g { op x() { context nowhere; native routine r; } }\n";
    let (sources, result) = pvi_codegen::check_bytes("multi.pvi", text.as_bytes());
    let diags = result.expect_err("three mistakes");
    let at: Vec<String> = diags
        .iter()
        .map(|d| format!("{}:{}", d.code, d.line_col(&sources).line))
        .collect();
    assert_eq!(
        at,
        ["unknown-unit:2", "unknown-type:3", "unknown-context:4"]
    );
}

#[test]
fn short_form_carries_file_line_and_column() {
    let (sources, result) = pvi_codegen::check_bytes(
        "idl/x.pvi",
        b"interface t 0.1.0;\nnewtype A: u64 in nanos;\n",
    );
    let d = &result.expect_err("unknown unit")[0];
    assert_eq!(
        d.short(&sources),
        "idl/x.pvi:2:19: error[unknown-unit]: unknown unit `nanos`"
    );
}

#[test]
fn every_rule_the_checker_can_report_has_a_corpus_file() {
    if pvi_tests::blessing() {
        // The reports are being rewritten beside this test; the next,
        // ordinary run checks them.
        println!("not checked while blessing");
        return;
    }
    let root = pvi_tests::root();
    let mut rules = std::collections::BTreeSet::new();
    let mut sources = vec![root.join("codegen/src")];
    while let Some(dir) = sources.pop() {
        for entry in fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            if entry.is_dir() {
                sources.push(entry);
            } else if entry.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&entry).unwrap();
                for piece in text.split("Diagnostic::new(").skip(1) {
                    let rule: String = piece
                        .trim_start()
                        .strip_prefix('"')
                        .unwrap_or("")
                        .chars()
                        .take_while(|c| *c != '"')
                        .collect();
                    if !rule.is_empty() {
                        rules.insert(rule);
                    }
                }
            }
        }
    }
    let mut reported = String::new();
    for stderr in fs::read_dir(root.join("tests/idl-errors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "stderr"))
    {
        reported.push_str(&fs::read_to_string(stderr).unwrap());
    }
    let untested: Vec<&String> = rules
        .iter()
        .filter(|r| !reported.contains(&format!("error[{r}]")))
        .collect();
    assert!(
        rules.len() > 50,
        "found only {} rule ids; is the scan broken?",
        rules.len()
    );
    assert!(
        untested.is_empty(),
        "rules with no file in tests/idl-errors/: {untested:?}"
    );
}

/// The lock corpus: each directory of `tests/idl-errors/` holds an
/// interface and its `abi.lock`, and `DIR.stderr` beside it the report of
/// checking them together.
#[test]
fn every_lock_case_gets_its_exact_diagnostics() {
    let root = pvi_tests::root();
    let dir = root.join("tests/idl-errors");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2, "the lock corpus is empty");
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            case.join("abi.lock").is_file(),
            "{} has no abi.lock",
            case.display()
        );
        let (sources, result) = pvi_codegen::check_paths(std::slice::from_ref(case)).unwrap();
        let Err(diags) = result else {
            failures.push(format!("{}: accepted", case.display()));
            continue;
        };
        let prefix = format!("{}/", root.display());
        let rendered: String = diags
            .iter()
            .map(|d| d.render(&sources, false).replace(&prefix, ""))
            .collect();
        let name = case.display().to_string();
        failures.extend(matches_expected(
            &name,
            &rendered,
            &case.with_extension("stderr"),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Why `rendered` is not the report expected in `expected_path`, if it is
/// not; with `PVI_BLESS=1`, write it there instead.
fn matches_expected(name: &str, rendered: &str, expected_path: &std::path::Path) -> Option<String> {
    if pvi_tests::blessing() {
        fs::write(expected_path, rendered).unwrap();
        return None;
    }
    match fs::read_to_string(expected_path) {
        Ok(expected) if expected == rendered => None,
        Ok(expected) => Some(format!(
            "{name}: diagnostics differ\n--- expected\n{expected}--- actual\n{rendered}"
        )),
        Err(_) => Some(format!(
            "{name}: no {} (run with PVI_BLESS=1 and review)",
            expected_path.display()
        )),
    }
}

/// Following a hint gives a file the checker accepts: the fix it leads
/// to type-checks, and into what was meant (a pointer passed where a
/// character goes once led, through a hint, to a file that checked).
#[test]
fn hints_lead_to_accepted_fixes() {
    // (case, the hint's words, the mistake, what the hint says to write)
    let fixes = [
        (
            "address-narrowed",
            "write `each data`",
            "H_PUTC(data.ptr)",
            "H_PUTC(each data)",
        ),
        (
            "via-platform",
            "write `from platform`",
            "via platform",
            "from platform",
        ),
        (
            "bad-routine",
            "e.g. `write_by_h`",
            "routine cpuid",
            "routine write_by_h",
        ),
    ];
    let dir = pvi_tests::root().join("tests/idl-errors");
    for (case, hint, from, to) in fixes {
        let name = format!("tests/idl-errors/{case}.pvi");
        let text = fs::read_to_string(dir.join(format!("{case}.pvi"))).unwrap();
        let stderr = fs::read_to_string(dir.join(format!("{case}.stderr"))).unwrap();
        assert!(
            stderr.contains(hint),
            "{name}: the report does not say {hint}:\n{stderr}"
        );
        assert!(text.contains(from), "{name} has no `{from}`");
        let fixed = text.replacen(from, to, 1);
        let (sources, result) = pvi_codegen::check_bytes(&name, fixed.as_bytes());
        if let Err(diags) = result {
            let rendered: String = diags.iter().map(|d| d.render(&sources, false)).collect();
            panic!("{name} with `{to}` is still rejected:\n{rendered}");
        }
    }
}
