//! `pvi new-backend`: write the scaffold's files into the repository.

use pvi_codegen::scaffold::{self, Refusal};
use std::path::Path;
use std::process::ExitCode;

fn refused(r: &Refusal) -> ExitCode {
    eprintln!("error: {}\n  = hint: {}", r.message, r.hint);
    ExitCode::from(2)
}

/// Write the files for `name` in the current directory's `idl/` and
/// `backends/`: exit 2 (and write nothing) when they exist or the
/// arguments cannot make a backend.
pub fn run(name: &str, display: &str, signature: &str) -> ExitCode {
    let model = match super::load(&[Path::new("idl").to_path_buf()]) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let signature = match scaffold::unescape(signature) {
        Ok(s) => s,
        Err(r) => return refused(&r),
    };
    let files = match scaffold::new_backend(&model, name, display, &signature) {
        Ok(f) => f,
        Err(r) => return refused(&r),
    };
    let idl = format!("idl/{name}.pvi");
    let backend = format!("backends/src/{name}.rs");
    let cargo = "backends/Cargo.toml";
    for path in [&idl, &backend] {
        if Path::new(path).exists() {
            return refused(&Refusal {
                message: format!("{path} exists already"),
                hint: "the scaffold writes new files only: edit that one, or remove it first"
                    .into(),
            });
        }
    }
    let toml = match std::fs::read_to_string(cargo) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {cargo}: {e} (run this from the repository's root)");
            return ExitCode::from(2);
        }
    };
    let Some(toml) = scaffold::add_feature(&toml, name) else {
        eprintln!("error: {cargo} has no `default = [` line in its [features]");
        return ExitCode::from(2);
    };
    for (path, text) in [(&idl, &files.idl), (&backend, &files.backend)] {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: {path}: {e}");
            return ExitCode::from(2);
        }
        println!("wrote {path}");
    }
    if let Err(e) = std::fs::write(cargo, toml) {
        eprintln!("error: {cargo}: {e}");
        return ExitCode::from(2);
    }
    println!("added the `{name}` feature to {cargo}, on by default");
    println!("next: describe {display}'s ABI in {idl} (its convention first), then `cargo xtask codegen`");
    ExitCode::SUCCESS
}
