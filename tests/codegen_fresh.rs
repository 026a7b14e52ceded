//! The checked-in generated artifacts (the SDK's `src/generated/`, the
//! conformance tests' trapping stubs, the book's reference pages) are
//! exactly what the generators make of `idl/` today.

use std::fs;

#[test]
fn checked_in_artifacts_match_the_idl() {
    let root = pvi_tests::root();
    let (_, result) = pvi_codegen::check_paths(&[root.join("idl")]).unwrap();
    let model = result.expect("idl/ checks clean");
    let mut stale = Vec::new();
    let mut files = 0;
    let previous_lock = pvi_codegen::lock::read(&root.join("idl/abi.lock"));
    let summary = fs::read_to_string(root.join("book/src/SUMMARY.md")).unwrap();
    assert!(
        summary.contains(pvi_codegen::doc::SUMMARY_HEADING),
        "book/src/SUMMARY.md lost the heading its generated reference list follows: {}",
        pvi_codegen::doc::SUMMARY_HEADING
    );
    for artifact in pvi_codegen::artifacts::all(&model, previous_lock.as_ref(), Some(&summary)) {
        let dir = root.join(artifact.dir);
        for file in &artifact.files {
            files += 1;
            let path = dir.join(&file.name);
            match fs::read_to_string(&path) {
                Ok(text) if text == file.text => {}
                Ok(_) => stale.push(format!("{}/{} is out of date", artifact.dir, file.name)),
                Err(_) => stale.push(format!("{}/{} is missing", artifact.dir, file.name)),
            }
        }
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let generated = fs::read_to_string(entry.path())
                .is_ok_and(|t| pvi_codegen::artifacts::is_generated(&t));
            if generated && !artifact.files.iter().any(|f| f.name == name) {
                stale.push(format!(
                    "{}/{name} is generated but no longer produced",
                    artifact.dir
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale; run `cargo xtask codegen`:\n{}",
        stale.join("\n")
    );
    println!("{files} generated files match idl/");
}

#[test]
fn the_summary_lists_every_reference_page() {
    let root = pvi_tests::root();
    let (_, result) = pvi_codegen::check_paths(&[root.join("idl")]).unwrap();
    let summary = fs::read_to_string(root.join("book/src/SUMMARY.md")).unwrap();
    for page in pvi_codegen::doc::reference(&result.unwrap()) {
        let link = format!("(reference/{})", page.name);
        assert!(
            summary.contains(&link),
            "book/src/SUMMARY.md does not link {link}"
        );
    }
}
