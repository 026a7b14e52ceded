//! The `pvi` command: check, format and explain the IDL.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pvi", version, about = "The pvi paravirtual-interface toolchain")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check IDL files and report every error (exit 1 if any).
    Check {
        /// Files or directories; default `idl/`.
        paths: Vec<PathBuf>,
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
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let color = std::io::stderr().is_terminal();
    match pvi_codegen::check_paths(&paths) {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok((sources, Err(diags))) => {
            for d in &diags {
                eprint!("{}", d.render(&sources, color));
            }
            eprintln!("error: {} problem(s) found", diags.len());
            ExitCode::from(1)
        }
        Ok((_, Ok(model))) => {
            let hvs = model.hypervisors().count();
            eprintln!("ok: interface {} {}: {} ops, {} hypervisors", model.interface.name.name, model.interface.version.text, model.ops().count(), hvs);
            ExitCode::SUCCESS
        }
    }
}
