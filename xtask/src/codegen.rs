//! `cargo xtask codegen`: regenerate every artifact from `idl/`.

use pvi_codegen::artifacts;
use std::path::Path;
use std::process::ExitCode;

/// Write every artifact whose text changed and remove generated files that
/// no longer belong; with `bless`, also rewrite the golden snapshots and the
/// error corpus's expected reports.
pub fn codegen(bless: bool) -> ExitCode {
    let model = match pvi_codegen::check_paths(&["idl".into()]) {
        Ok((_, Ok(model))) => model,
        Ok((sources, Err(diags))) => {
            for d in &diags {
                eprint!("{}", d.render(&sources, false));
            }
            eprintln!(
                "xtask codegen: idl/ has {} problem(s); nothing written",
                diags.len()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("xtask codegen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut changed = 0;
    let previous_lock = pvi_codegen::lock::read(Path::new("idl/abi.lock"));
    let summary = std::fs::read_to_string("book/src/SUMMARY.md").ok();
    for artifact in artifacts::all(&model, previous_lock.as_ref(), summary.as_deref()) {
        let dir = Path::new(artifact.dir);
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("xtask codegen: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for file in &artifact.files {
            let path = dir.join(&file.name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(file.text.as_str()) {
                if let Err(e) = std::fs::write(&path, &file.text) {
                    eprintln!("xtask codegen: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", path.display());
                changed += 1;
            }
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = artifact.files.iter().any(|f| f.name == name);
            if !ours && std::fs::read_to_string(&path).is_ok_and(|t| artifacts::is_generated(&t)) {
                println!("removed {}", path.display());
                let _ = std::fs::remove_file(&path);
                changed += 1;
            }
        }
    }
    println!("xtask codegen: {changed} file(s) changed");
    if bless {
        println!(
            "xtask codegen: rewriting golden snapshots and expected diagnostics (review the diff)"
        );
        // The golden snapshots first: the UI tests compile against them.
        let runs: [&[&str]; 2] = [
            &[
                "test",
                "--quiet",
                "--package",
                "pvi-tests",
                "--test",
                "codegen_golden",
                "--test",
                "idl_errors",
            ],
            &["test", "--quiet", "--package", "pvi-ui-tests"],
        ];
        for args in runs {
            let ok = crate::cargo::cargo()
                .args(args)
                .env("PVI_BLESS", "1")
                .env("TRYBUILD", "overwrite")
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("xtask codegen: `cargo {}` failed", args.join(" "));
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
