//! The IDL language reference (`book/src/idl.md`) promises that its
//! examples are taken from `idl/`: every `pvi` block parses, and every line
//! of it appears in the real interface.

use std::fs;

fn pvi_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```pvi") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap_or_default()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_reference_example_parses_and_comes_from_idl() {
    let root = pvi_tests::root();
    let reference = fs::read_to_string(root.join("book/src/idl.md")).unwrap();
    let idl_lines: std::collections::BTreeSet<String> = pvi_tests::idl_files()
        .iter()
        .flat_map(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let blocks = pvi_blocks(&reference);
    assert!(
        blocks.len() >= 6,
        "expected examples in the reference, found {}",
        blocks.len()
    );
    for (n, block) in blocks.iter().enumerate() {
        if let Err(d) = pvi_codegen::parse(0, block) {
            panic!(
                "example {} does not parse: {}\n{block}",
                n + 1,
                d[0].message
            );
        }
        for line in block
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "}")
        {
            assert!(
                idl_lines.contains(line),
                "example {} has a line that is not in idl/: `{line}`",
                n + 1
            );
        }
    }
}
