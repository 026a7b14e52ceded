//! The pvi IDL toolchain: grammar, syntax tree, checker, diagnostics,
//! formatter, the code generators and the `pvi` command built on them.
//!
//! The book (`book/` in the repository, `cargo xtask book`) is the
//! reference for the language ("The IDL language reference") and for what
//! the generators emit ("How bindings are generated"). Checking a tree of
//! IDL files, with a report per error:
//!
//! ```no_run
//! let (sources, result) = pvi_codegen::check_paths(&["idl".into()]).unwrap();
//! match result {
//!     Ok(model) => println!("{} ops", model.ops().count()),
//!     Err(diags) => for d in diags { eprint!("{}", d.render(&sources, false)) },
//! }
//! ```

pub mod abi;
pub mod artifacts;
pub mod ast;
pub mod callsites;
mod check;
pub mod compat;
pub mod diagnostic;
pub mod doc;
pub mod escape;
pub mod explain;
pub mod fmt;
pub mod gen;
pub mod ir;
mod lexcheck;
pub mod lock;
pub mod model;
mod parser;
pub mod scaffold;
pub mod source;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::Model;
pub use parser::{closest, parse};
pub use source::{FileId, SourceMap, Span};

use std::io;
use std::path::{Path, PathBuf};

/// The `.pvi` files named by `paths`: files as given, directories expanded
/// to the `.pvi` files directly inside them, sorted by name.
pub fn collect_files(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pvi") && p.is_file())
                .collect();
            found.sort();
            out.extend(found);
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file or directory", path.display()),
            ));
        }
    }
    Ok(out)
}

/// Add `bytes` to `sources` as `name`. Text that is not UTF-8 is added with
/// the bad bytes replaced, and the diagnostic points at the first of them.
pub fn add_source(
    sources: &mut SourceMap,
    name: &str,
    bytes: Vec<u8>,
) -> (FileId, Option<Diagnostic>) {
    match String::from_utf8(bytes) {
        Ok(text) => (sources.add(name, text), None),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let id = sources.add(name, text);
            let d = Diagnostic::new(
                "invalid-utf8",
                Span::new(id, at, at + 1),
                "the file is not valid UTF-8",
            )
            .label("invalid byte")
            .hint("IDL files are UTF-8 text; re-save the file as UTF-8");
            (id, Some(d))
        }
    }
}

/// Parse and check the files in `sources` as one interface.
pub fn check_sources(sources: &SourceMap, ids: &[FileId]) -> Result<Model, Diagnostics> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for &id in ids {
        match parser::parse(id, sources.text(id)) {
            Ok(file) => files.push(file),
            Err(mut d) => diags.append(&mut d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut model = check::check(files)?;
    let base = |name: &str| {
        Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let names: Vec<String> = ids.iter().map(|&id| base(sources.name(id))).collect();
    model.source_hash = model::source_hash(
        ids.iter()
            .zip(&names)
            .map(|(&id, name)| (name.as_str(), sources.text(id).as_bytes())),
    );
    Ok(model)
}

/// Check one in-memory file: the entry point of the tests.
pub fn check_bytes(name: &str, bytes: &[u8]) -> (SourceMap, Result<Model, Diagnostics>) {
    let mut sources = SourceMap::new();
    let (id, bad) = add_source(&mut sources, name, bytes.to_vec());
    if let Some(d) = bad {
        return (sources, Err(vec![d]));
    }
    let result = check_sources(&sources, &[id]);
    (sources, result)
}

/// Read and check the `.pvi` files under `paths` as one interface, and
/// against the lock beside them (`abi.lock`), if there is one.
pub fn check_paths(paths: &[PathBuf]) -> io::Result<(SourceMap, Result<Model, Diagnostics>)> {
    let mut sources = SourceMap::new();
    let mut ids = Vec::new();
    let mut diags = Vec::new();
    let files = collect_files(paths)?;
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no .pvi files found",
        ));
    }
    for path in &files {
        let (id, bad) = add_source(&mut sources, &display(path), std::fs::read(path)?);
        ids.push(id);
        diags.extend(bad);
    }
    if !diags.is_empty() {
        return Ok((sources, Err(diags)));
    }
    let result = check_sources(&sources, &ids).and_then(|model| {
        let contradictions = lock::check_paths(&model, paths).map_err(|why| {
            vec![
                Diagnostic::new("abi-lock-unreadable", model.interface.name.span, why)
                    .hint("`pvi lock` writes the lock anew from the IDL"),
            ]
        })?;
        if contradictions.is_empty() {
            Ok(model)
        } else {
            Err(contradictions)
        }
    });
    Ok((sources, result))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
