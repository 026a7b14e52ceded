//! `pvi compat`: read both versions of the interface, classify every
//! difference, report it as diagnostics or JSON, and exit by the verdict.

use pvi_codegen::abi::Abi;
use pvi_codegen::compat::{compare, verdict, Change, Class, Verdict};
use pvi_codegen::diagnostic::Severity;
use pvi_codegen::{Diagnostic, SourceMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// One side's sources: a name for each file and its text.
type Files = Vec<(String, Vec<u8>)>;

fn read_dir_or_files(path: &Path) -> Result<Files, String> {
    let files = pvi_codegen::collect_files(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    if files.is_empty() {
        return Err(format!("{}: no .pvi files", path.display()));
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::read(&f)
                .map(|b| (f.display().to_string(), b))
                .map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

/// The `.pvi` files of `dir` as they were at git revision `rev`.
fn read_at_revision(dir: &Path, rev: &str) -> Result<Files, String> {
    let git = |args: &[&str]| -> Result<Vec<u8>, String> {
        let out = Command::new("git")
            .args(args)
            .output()
            .map_err(|e| format!("git: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out.stdout)
    };
    let dir_text = dir.display().to_string();
    let listing = git(&["ls-tree", "--name-only", rev, &format!("{dir_text}/")])?;
    let mut files = Vec::new();
    for name in String::from_utf8_lossy(&listing).lines() {
        if name.ends_with(".pvi") {
            let text = git(&["show", &format!("{rev}:{name}")])?;
            files.push((format!("{rev}:{name}"), text));
        }
    }
    if files.is_empty() {
        return Err(format!("{dir_text}/ has no .pvi files at {rev}"));
    }
    Ok(files)
}

/// One side as an ABI, its files added to `sources`; diagnostics rendered
/// and the exit code returned when it does not check.
fn side(sources: &mut SourceMap, what: &str, files: Files) -> Result<Abi, ExitCode> {
    if let [(name, bytes)] = files.as_slice() {
        if name.ends_with(".lock") {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let lock = pvi_codegen::lock::parse(&text).map_err(|e| {
                eprintln!("error: {name}:{}: {}", e.line, e.message);
                ExitCode::from(2)
            })?;
            let id = sources.add(name.clone(), text);
            return Ok(Abi::from_lock(&lock, id));
        }
    }
    let mut ids = Vec::new();
    for (name, bytes) in files {
        let (id, bad) = pvi_codegen::add_source(sources, &name, bytes);
        if let Some(d) = bad {
            eprint!("{}", d.render(sources, false));
            return Err(ExitCode::from(1));
        }
        ids.push(id);
    }
    match pvi_codegen::check_sources(sources, &ids) {
        Ok(model) => Ok(Abi::of(&model)),
        Err(diags) => {
            for d in &diags {
                eprint!("{}", d.render(sources, std::io::stderr().is_terminal()));
            }
            eprintln!("error: the {what} version does not check; nothing compared");
            Err(ExitCode::from(1))
        }
    }
}

fn files_of(path: &Path) -> Result<Files, ExitCode> {
    if path.extension().is_some_and(|e| e == "lock") {
        return std::fs::read(path)
            .map(|b| vec![(path.display().to_string(), b)])
            .map_err(|e| {
                eprintln!("error: {}: {e}", path.display());
                ExitCode::from(2)
            });
    }
    read_dir_or_files(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// `pvi compat OLD NEW` or `pvi compat --since REV [DIR]`.
pub fn run(
    old: Option<PathBuf>,
    new: Option<PathBuf>,
    since: Option<String>,
    format: &str,
) -> ExitCode {
    let (old_files, new_path) = match (&since, old) {
        (Some(rev), dir) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("idl"));
            match read_at_revision(&dir, rev) {
                Ok(f) => (f, dir),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (None, Some(old)) => match files_of(&old) {
            Ok(f) => (f, new.unwrap_or_else(|| PathBuf::from("idl"))),
            Err(code) => return code,
        },
        (None, None) => {
            eprintln!("error: name the old version (`pvi compat OLD [NEW]`) or a git revision (`--since REV`)");
            return ExitCode::from(2);
        }
    };
    let new_files = match files_of(&new_path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let mut sources = SourceMap::new();
    let old = match side(&mut sources, "old", old_files) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let new = match side(&mut sources, "new", new_files) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let changes = compare(&old, &new);
    let verdict = verdict(&old, &new, &changes);
    let count = |class| changes.iter().filter(|c| c.class == class).count();
    let (breaking, compatible, docs) = (
        count(Class::Breaking),
        count(Class::Compatible),
        count(Class::DocsOnly),
    );
    let verdict_word = match verdict {
        Verdict::Compatible => "compatible",
        Verdict::BreakingWithMajorBump => "breaking, allowed by the major version bump",
        Verdict::Breaking => "breaking",
    };
    if format == "json" {
        let json = serde_json::json!({
            "old": {"interface": old.name, "version": old.version},
            "new": {"interface": new.name, "version": new.version},
            "changes": changes.iter().map(|c| change_json(c, &sources)).collect::<Vec<_>>(),
            "breaking": breaking,
            "compatible": compatible,
            "docs_only": docs,
            "verdict": match verdict {
                Verdict::Compatible => "compatible",
                Verdict::BreakingWithMajorBump => "breaking-with-major-bump",
                Verdict::Breaking => "breaking",
            },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        let color = std::io::stderr().is_terminal();
        // Docs-only changes one line each: they cannot break anything.
        for c in &changes {
            let d = diagnostic(c, verdict == Verdict::BreakingWithMajorBump);
            if c.class == Class::DocsOnly {
                eprintln!("{}", d.short(&sources));
            } else {
                eprint!("{}", d.render(&sources, color));
            }
        }
        eprintln!(
            "pvi compat: {} {} -> {}: {breaking} breaking, {compatible} compatible, {docs} docs-only: {verdict_word}",
            new.name, old.version, new.version
        );
        if verdict == Verdict::Breaking {
            eprintln!(
                "hint: keep the released items as they are and add new ones with `@since`, or bump the major version (for 0.x, the minor) if breaking old guests is the intent"
            );
        }
    }
    if verdict == Verdict::Breaking {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn diagnostic(c: &Change, bumped: bool) -> Diagnostic {
    let severity = match c.class {
        Class::Breaking if !bumped => Severity::Error,
        Class::Breaking => Severity::Warning,
        Class::Compatible | Class::DocsOnly => Severity::Note,
    };
    let mut d = Diagnostic::new(
        c.rule,
        c.span(),
        format!("{}: {}", c.class.word(), c.message),
    )
    .severity(severity)
    .label(match (&c.old, &c.new) {
        (Some(_), Some(_)) => "now",
        (None, Some(_)) => "added",
        _ => "removed (as it was)",
    });
    if let (Some(old), Some(_)) = (&c.old, &c.new) {
        d = d.related(old.span, "before");
    }
    d
}

fn change_json(c: &Change, sources: &SourceMap) -> serde_json::Value {
    let at = |f: &Option<pvi_codegen::abi::Fact>| {
        f.as_ref().map(|f| {
            let lc = sources.line_col(f.span);
            serde_json::json!({
                "file": sources.name(f.span.file),
                "line": lc.line,
                "col": lc.col,
                "value": f.value,
            })
        })
    };
    serde_json::json!({
        "rule": c.rule,
        "class": c.class.word(),
        "key": c.key,
        "message": c.message,
        "old": at(&c.old),
        "new": at(&c.new),
    })
}
