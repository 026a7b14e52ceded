//! `pvi callsites`: the op call sites of a kernel's sources, per op.

use pvi_codegen::callsites::Counts;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Every `.rs` file under `path` (or `path` itself), sorted.
fn rust_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            rust_files(&entry, out)?;
        } else if entry.extension().is_some_and(|e| e == "rs") {
            out.push(entry);
        }
    }
    Ok(())
}

pub(crate) fn run(sources: &[PathBuf], idl: &[PathBuf]) -> ExitCode {
    let model = match crate::load(idl) {
        Ok(model) => model,
        Err(code) => return code,
    };
    let mut counts = Counts::new(model.ops().map(|o| o.op.name.name.as_str()));
    let mut files = Vec::new();
    for source in sources {
        if let Err(e) = rust_files(source, &mut files) {
            eprintln!("error: {}: {e}", source.display());
            return ExitCode::from(2);
        }
    }
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        if let Err(e) = counts.add_file(&text) {
            eprintln!("error: {}: not Rust tokens: {e}", file.display());
            return ExitCode::from(1);
        }
    }
    let names: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
    match report(&counts, &names.join(", ")) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the report: {e}");
            ExitCode::from(2)
        }
    }
}

/// The report, on stdout.
fn report(counts: &Counts, sources: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "pvi callsites: {} ops, {} called, from {} sites in {} files of {sources}",
        counts.per_op.len(),
        counts.called(),
        counts.total(),
        counts.files,
    )?;
    for (op, n) in &counts.per_op {
        writeln!(out, "  {op:<20} {n}")?;
    }
    out.flush()
}
