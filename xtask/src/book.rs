//! `cargo xtask book`: build the book with mdBook and test it. A warning
//! from mdBook fails the build, as a broken link or a missing file would
//! silently leave a hole in the published book otherwise.

use crate::provision;
use crate::steps::{Outcome, Step};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// mdBook's own checks, as steps: the build (no warnings) and
/// `mdbook test` (the Rust examples compile and run).
pub fn steps(steps: &mut Vec<Step>) {
    if !provision::mdbook() {
        for name in ["book: mdbook build, no warnings", "book: mdbook test"] {
            steps.push(Step {
                name,
                outcome: Outcome::Failed,
                seconds: 0.0,
            });
        }
        return;
    }
    step("book: mdbook build, no warnings", &["build", "book"], steps);
    step("book: mdbook test", &["test", "book"], steps);
}

/// The book's own checks, then its guides replayed (slower: they build a
/// copy of the repository).
pub fn all_steps(steps_out: &mut Vec<Step>) {
    steps(steps_out);
    crate::guide::steps(&provision::workspace_root(), steps_out);
}

/// Run `mdbook ARGS`, echoing its output; failed if it fails or warns.
fn step(name: &'static str, args: &[&str], steps: &mut Vec<Step>) {
    println!("\n==> {name}");
    let start = Instant::now();
    let outcome = match Command::new("mdbook").args(args).output() {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{stderr}");
            let warnings: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            if !out.status.success() {
                Outcome::Failed
            } else if !warnings.is_empty() {
                println!("mdbook reported {} warning(s)", warnings.len());
                Outcome::Failed
            } else {
                Outcome::Passed
            }
        }
        Err(e) => {
            println!("could not run mdbook: {e}");
            Outcome::Failed
        }
    };
    crate::steps::finish(name, outcome, start, steps);
}

/// `cargo xtask book`: the book's steps alone, guides included; the HTML
/// is in `book/book/`.
pub fn book() -> ExitCode {
    let mut all = Vec::new();
    all_steps(&mut all);
    if all.iter().all(|s| matches!(s.outcome, Outcome::Passed)) {
        println!("xtask book: ok; open book/book/index.html");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
