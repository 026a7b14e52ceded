//! Golden snapshots of the generators' output for a fixture IDL
//! (`tests/codegen-fixture/`) with one of every construct: Rust, trapping
//! stubs and reference pages under `tests/golden/`. `cargo xtask codegen
//! --bless` rewrites them; review the diff.

use pvi_codegen::gen::Output;
use std::fs;

fn compare(dir: &str, outputs: &[Output], failures: &mut Vec<String>) {
    let dir = pvi_tests::root().join("tests/golden").join(dir);
    if pvi_tests::blessing() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
    }
    for out in outputs {
        let path = dir.join(&out.name);
        if pvi_tests::blessing() {
            fs::write(&path, &out.text).unwrap();
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(t) if t == out.text => {}
            Ok(t) => {
                let line = t
                    .lines()
                    .zip(out.text.lines())
                    .position(|(a, b)| a != b)
                    .map(|l| l + 1)
                    .unwrap_or(0);
                failures.push(format!("{}: differs from line {line}", path.display()));
            }
            Err(_) => failures.push(format!("{}: missing", path.display())),
        }
    }
}

#[test]
fn generator_output_matches_the_golden_snapshots() {
    let (_, result) =
        pvi_codegen::check_paths(&[pvi_tests::root().join("tests/codegen-fixture")]).unwrap();
    let model = result.expect("the fixture checks clean");
    let mut failures = Vec::new();
    compare("rust", &pvi_codegen::gen::rust(&model), &mut failures);
    compare(
        "trap",
        &pvi_codegen::gen::trap_stubs(&model, "crate::generated"),
        &mut failures,
    );
    compare("docs", &pvi_codegen::doc::reference(&model), &mut failures);
    assert!(
        failures.is_empty(),
        "generator output changed; if intended, run `cargo xtask codegen --bless` and review:\n{}",
        failures.join("\n")
    );
}

#[test]
fn generation_is_deterministic() {
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.unwrap();
    assert_eq!(
        pvi_codegen::gen::rust(&model),
        pvi_codegen::gen::rust(&model)
    );
    assert_eq!(
        pvi_codegen::gen::fingerprint(&model),
        pvi_codegen::gen::fingerprint(&model)
    );
}

/// Every interface version newer than the baseline has its cargo feature,
/// implying the one before it; otherwise its items would silently vanish.
fn assert_features_declared(idl: &str, manifest: &str) {
    let root = pvi_tests::root();
    let (_, result) = pvi_codegen::check_paths(&[root.join(idl)]).unwrap();
    let model = result.unwrap();
    let toml = fs::read_to_string(root.join(manifest)).unwrap();
    let mut previous: Option<String> = None;
    for v in model.gated_versions() {
        let feature = pvi_codegen::model::feature_name(v);
        let line = toml
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{feature} =")))
            .unwrap_or_else(|| panic!("{manifest} lacks the feature `{feature}`"));
        if let Some(p) = &previous {
            assert!(
                line.contains(&format!("\"{p}\"")),
                "{manifest}: `{feature}` must enable `{p}`"
            );
        }
        previous = Some(feature);
    }
}

#[test]
fn every_gated_interface_version_has_a_feature() {
    assert_features_declared("idl", "sdk/Cargo.toml");
    assert_features_declared("tests/codegen-fixture", "tests/fixture-sdk/Cargo.toml");
}
