//! No function of the code generator is longer than 150 lines: long
//! generators hid the bugs issue [arch] found. The source is rustfmt's
//! (`cargo xtask test` checks), so a function ends at the first `}` in
//! its own column.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 150;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("codegen/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each function of `source`: its name, first line (from 1) and length.
fn functions(source: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let rest = ["pub(crate) fn ", "pub(super) fn ", "pub fn ", "fn "]
            .iter()
            .find_map(|p| code.strip_prefix(p));
        let Some(rest) = rest else { continue };
        if line.trim_end().ends_with(';') {
            continue; // a declaration without a body
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", " ".repeat(indent));
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with(&close) && l.len() - l.trim_start().len() == indent)
            .map_or(lines.len(), |n| i + 1 + n);
        found.push((name, i + 1, end - i + 1));
    }
    found
}

#[test]
fn no_codegen_function_is_longer_than_150_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../codegen/src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 10, "codegen/src has its sources");
    let mut long = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a readable source");
        for (name, line, length) in functions(&source) {
            if length > MAX_LINES {
                long.push(format!(
                    "{}:{line}: fn {name}, {length} lines",
                    file.display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these functions (at most {MAX_LINES} lines each):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_measure_counts_a_function_from_its_line_to_its_closing_brace() {
    let source = "fn a() {\n    if x {\n    }\n}\n    fn b();\n";
    assert_eq!(functions(source), [("a".to_string(), 1, 4)]);
}
