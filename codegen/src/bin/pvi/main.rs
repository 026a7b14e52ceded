//! The `pvi` command: check, format and explain the IDL, lock its ABI,
//! compare two versions of it, and read what a guest binary was built for.

use clap::{Parser, Subcommand};
use pvi_codegen::{Diagnostic, Model, SourceMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

mod callsites;
mod compat;
mod inspect;
mod new_backend;

#[derive(Parser)]
#[command(
    name = "pvi",
    version,
    about = "The pvi paravirtual-interface toolchain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check IDL files as one interface and report every error (exit 1 if any).
    Check {
        /// Files or directories; default `idl/`.
        paths: Vec<PathBuf>,
    },
    /// Rewrite IDL files in canonical form, keeping every comment.
    Fmt {
        /// Change nothing; list the files that are not formatted (exit 1 if any).
        #[arg(long)]
        check: bool,
        /// Files or directories; default `idl/`.
        paths: Vec<PathBuf>,
    },
    /// Generate the SDK's Rust sources (types, ops trait, ABI constants,
    /// hypercall stubs) into DIR.
    Gen {
        /// Output directory (the checked-in copy is sdk/src/generated).
        #[arg(long)]
        out: PathBuf,
        /// IDL files or directories; default `idl/`.
        #[arg(long = "idl", default_value = "idl")]
        idl: Vec<PathBuf>,
    },
    /// Generate the book's reference pages (ops by group, each hypervisor ABI,
    /// the op × hypervisor matrix) into DIR.
    Doc {
        /// Output directory (the checked-in copy is book/src/reference).
        #[arg(long)]
        out: PathBuf,
        /// IDL files or directories; default `idl/`.
        #[arg(long = "idl", default_value = "idl")]
        idl: Vec<PathBuf>,
    },
    /// Write the ABI lock (`abi.lock` beside the IDL) from the IDL: run it
    /// after a version bump, and commit the lock with the IDL.
    Lock {
        /// Files or directories; default `idl/`.
        paths: Vec<PathBuf>,
    },
    /// Classify every difference between two versions of the interface as
    /// breaking, compatible or docs-only. Exit 0 when no change breaks old
    /// guests (or the major version was bumped for them), 1 otherwise.
    Compat {
        /// The old version: an IDL directory or files, or an `abi.lock`.
        /// With `--since`, the IDL directory to compare against that
        /// revision (default `idl/`).
        old: Option<PathBuf>,
        /// The new version (default `idl/`).
        new: Option<PathBuf>,
        /// Compare the IDL directory (`old`, default `idl/`) with its state
        /// at this git revision.
        #[arg(long, value_name = "GIT_REV")]
        since: Option<String>,
        /// `text` (diagnostics) or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// List every rule with its class and meaning, then exit.
        #[arg(long)]
        rules: bool,
    },
    /// Print the interface version, fingerprint and backends a guest
    /// binary records in its `.note.pvi` ELF note.
    Inspect {
        /// The guest kernel (ELF).
        elf: PathBuf,
    },
    /// Start a backend for a hypervisor the interface does not have yet:
    /// write idl/NAME.pvi (detection, a placeholder convention, the
    /// required ops native) and backends/src/NAME.rs, and add the `NAME`
    /// feature to backends/Cargo.toml. Run it from the repository's root.
    NewBackend {
        /// Its IDL name, in snake_case: module, cargo feature, `pvi.backend=`.
        name: String,
        /// The name people use, e.g. `Jailhouse`.
        display: String,
        /// Its CPUID signature (ebx, ecx, edx of leaf 0x40000000), 12 bytes
        /// with the IDL's escapes, e.g. 'Jailhouse\0\0\0'.
        #[arg(long)]
        signature: String,
    },
    /// Count the call sites of the interface's ops in a kernel's Rust
    /// sources (every `.rs` file under each directory): Ingo Molnar's
    /// measure of a paravirtualization interface, per op.
    Callsites {
        /// Source directories or files, e.g. `example-kernel/src`.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// IDL files or directories; default `idl/`.
        #[arg(long = "idl", default_value = "idl")]
        idl: Vec<PathBuf>,
    },
    /// Show an op's native meaning and how each hypervisor serves it.
    Explain {
        /// The op's name, e.g. `clock_ns`.
        op: String,
        /// IDL files or directories; default `idl/`.
        #[arg(long = "idl", default_value = "idl")]
        idl: Vec<PathBuf>,
    },
}

fn default_paths(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("idl")]
    } else {
        paths
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { paths } => check(default_paths(paths)),
        Command::Fmt { check, paths } => fmt(default_paths(paths), check),
        Command::Explain { op, idl } => explain(&op, idl),
        Command::Callsites { sources, idl } => callsites::run(&sources, &idl),
        Command::Lock { paths } => lock(default_paths(paths)),
        Command::Compat {
            old,
            new,
            since,
            format,
            rules,
        } => {
            if rules {
                for (rule, class, meaning) in pvi_codegen::compat::RULES {
                    println!("{rule:<28} {:<10} {meaning}", class.word());
                }
                return ExitCode::SUCCESS;
            }
            compat::run(old, new, since, &format)
        }
        Command::Inspect { elf } => inspect::run(&elf),
        Command::NewBackend {
            name,
            display,
            signature,
        } => new_backend::run(&name, &display, &signature),
        Command::Gen { out, idl } => generate(&out, idl, pvi_codegen::gen::rust),
        Command::Doc { out, idl } => generate(&out, idl, pvi_codegen::doc::reference),
    }
}

fn report(sources: &SourceMap, diags: &[Diagnostic]) {
    let color = std::io::stderr().is_terminal();
    for d in diags {
        eprint!("{}", d.render(sources, color));
    }
    eprintln!("error: {} problem(s) found", diags.len());
}

/// The checked model of `paths`, or the exit code after reporting why not:
/// 2 when the files cannot be read, 1 when they have problems.
pub(crate) fn load(paths: &[PathBuf]) -> Result<Model, ExitCode> {
    match pvi_codegen::check_paths(paths) {
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
        Ok((sources, Err(diags))) => {
            report(&sources, &diags);
            Err(ExitCode::from(1))
        }
        Ok((_, Ok(model))) => Ok(model),
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    match load(&paths) {
        Err(code) => code,
        Ok(model) => {
            let hvs = model.hypervisors().count();
            eprintln!(
                "ok: interface {} {}: {} ops, {} hypervisors",
                model.interface.name.name,
                model.interface.version.text,
                model.ops().count(),
                hvs
            );
            ExitCode::SUCCESS
        }
    }
}

fn fmt(paths: Vec<PathBuf>, check_only: bool) -> ExitCode {
    let files = match pvi_codegen::collect_files(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut unformatted = 0;
    let mut failed = false;
    for path in files {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        let mut sources = SourceMap::new();
        let (id, bad) = pvi_codegen::add_source(&mut sources, &path.display().to_string(), bytes);
        if let Some(d) = bad {
            report(&sources, &[d]);
            failed = true;
            continue;
        }
        let text = sources.text(id).to_string();
        let file = match pvi_codegen::parse(id, &text) {
            Ok(f) => f,
            Err(diags) => {
                report(&sources, &diags);
                failed = true;
                continue;
            }
        };
        let formatted = pvi_codegen::fmt::format_file(&file, &text);
        if formatted == text {
            continue;
        }
        unformatted += 1;
        if check_only {
            println!("{}: not formatted", path.display());
        } else if let Err(e) = std::fs::write(&path, formatted) {
            eprintln!("error: {}: {e}", path.display());
            failed = true;
        } else {
            println!("{}: formatted", path.display());
        }
    }
    if failed {
        ExitCode::from(1)
    } else if check_only && unformatted > 0 {
        eprintln!("error: {unformatted} file(s) need `pvi fmt`");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn lock(paths: Vec<PathBuf>) -> ExitCode {
    let model = match load(&paths) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let Some(path) = pvi_codegen::lock::path_for(&paths) else {
        eprintln!("error: no IDL path given");
        return ExitCode::from(2);
    };
    let previous = pvi_codegen::lock::read(&path);
    let text = pvi_codegen::lock::render(&model, previous.as_ref());
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        println!("{} is up to date", path.display());
        return ExitCode::SUCCESS;
    }
    match std::fs::write(&path, text) {
        Ok(()) => {
            println!(
                "wrote {} (interface {} {})",
                path.display(),
                model.interface.name.name,
                model.interface.version.text
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn explain(op: &str, idl: Vec<PathBuf>) -> ExitCode {
    match load(&idl) {
        Err(code) => code,
        Ok(model) => match pvi_codegen::explain::explain(&model, op) {
            Some(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            None => {
                let names: Vec<&str> = model.ops().map(|o| o.op.name.name.as_str()).collect();
                match pvi_codegen::closest(op, &names) {
                    Some(best) => eprintln!("error: no op named `{op}`; did you mean `{best}`?"),
                    None => eprintln!("error: no op named `{op}`; ops are: {}", names.join(", ")),
                }
                ExitCode::from(1)
            }
        },
    }
}

/// Write `outputs` into `out`, replacing files whose text changed.
fn generate(
    out: &std::path::Path,
    idl: Vec<PathBuf>,
    outputs: fn(&Model) -> Vec<pvi_codegen::gen::Output>,
) -> ExitCode {
    let model = match load(&idl) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("error: {}: {e}", out.display());
        return ExitCode::from(2);
    }
    for file in outputs(&model) {
        let path = out.join(&file.name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(file.text.as_str()) {
            continue;
        }
        if let Err(e) = std::fs::write(&path, &file.text) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
