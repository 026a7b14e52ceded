//! Replaying a page of the book: its patches (` ```diff ` blocks) applied
//! with `git apply` on a copy of the repository and its commands
//! (` ```sh ` blocks) run, in order; a ` ```text,output ` block right after
//! a command lists lines its output must contain. A guide that no longer
//! works on a fresh clone fails `cargo xtask test`.
//!
//! Info-string attributes: `diff,mistake` is a deliberate error, undone
//! after the next command; `sh,fails` must fail; `sh,no-replay` is not run.

use crate::steps::{Outcome, Step};
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A fenced code block: its info string's words and its text.
struct Block {
    words: Vec<String>,
    body: String,
}

impl Block {
    fn kind(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    fn has(&self, attribute: &str) -> bool {
        self.words.iter().skip(1).any(|w| w == attribute)
    }
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                current = Some(Block {
                    words: info.split(',').map(|w| w.trim().to_string()).collect(),
                    body: String::new(),
                });
            }
            Event::Text(text) => {
                if let Some(b) = current.as_mut() {
                    b.body.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(current.take()),
            _ => {}
        }
    }
    out
}

/// `git apply` (or `-R`) `patch` in `dir`.
fn git_apply(dir: &Path, patch: &str, reverse: bool) -> Result<(), String> {
    // The copy sits inside this repository's target/: without a ceiling,
    // git would take it for a subdirectory of this repository and skip
    // every path of the patch as outside it.
    let ceiling = dir.parent().unwrap_or(dir);
    let mut child = Command::new("git")
        .arg("apply")
        .args(reverse.then_some("-R"))
        .current_dir(dir)
        .env("GIT_CEILING_DIRECTORIES", ceiling)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git apply: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(patch.as_bytes())
            .map_err(|e| format!("git apply: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("git apply: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the patch does not apply:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// How long one replayed command may run: a guide's command that hangs
/// (a boot that never ends) must fail the step, not stall CI.
const COMMAND_TIMEOUT_SECS: u32 = 600;

/// Run one command line in `dir` (with its own cargo target directory if
/// given); its exit status and output. GNU `timeout` kills the command's
/// whole process group (QEMU included) when it overruns.
fn sh(dir: &Path, line: &str, target_dir: Option<&Path>) -> Result<(bool, String), String> {
    println!("    $ {line}");
    let mut command = Command::new("timeout");
    command
        .args([
            "--kill-after=10",
            &COMMAND_TIMEOUT_SECS.to_string(),
            "bash",
            "-c",
            line,
        ])
        .current_dir(dir);
    if let Some(t) = target_dir {
        command.env("CARGO_TARGET_DIR", t);
    }
    let out = command.output().map_err(|e| format!("{line}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(124) {
        text.push_str(&format!("\n(killed after {COMMAND_TIMEOUT_SECS} s)\n"));
    }
    Ok((out.status.success(), text))
}

/// Whether every line of `expected` (but blank ones and `…`) is a line of
/// `output`; the first missing one otherwise.
fn missing_line<'a>(expected: &'a str, output: &str) -> Option<&'a str> {
    let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
    expected
        .lines()
        .map(str::trim_end)
        .find(|want| !want.trim().is_empty() && want.trim() != "…" && !lines.contains(want))
}

/// Replay `guide`: in a fresh copy under `target/guides/` when it changes
/// files, else in the repository itself. `Ok` holds the commands skipped
/// because this machine cannot run them, with why.
fn replay(root: &Path, guide: &Guide) -> Result<Vec<String>, String> {
    let path = Path::new(guide.path);
    let markdown =
        fs::read_to_string(root.join(path)).map_err(|e| format!("{}: {e}", path.display()))?;
    let (work, target_dir) = if guide.on_a_copy {
        let stem = path
            .file_stem()
            .map_or("guide".into(), |s| s.to_string_lossy().into_owned());
        let work = root.join("target/guides").join(stem);
        let _ = fs::remove_dir_all(&work);
        crate::scratch::copy_repository(root, &work)
            .map_err(|e| format!("copying the repository: {e}"))?;
        // Shared between runs, so that only what the guide changes rebuilds.
        (work, Some(root.join("target/guides/cargo-target")))
    } else {
        (root.to_path_buf(), None)
    };
    let kvm = crate::qemu::kvm_usable();
    let blocks = blocks(&markdown);
    let mut mistakes: Vec<&str> = Vec::new();
    let mut skipped = Vec::new();
    let mut replayed = 0;
    for (n, block) in blocks.iter().enumerate() {
        let at = format!("{}, code block {}", path.display(), n + 1);
        match block.kind() {
            "diff" if !guide.on_a_copy => {
                return Err(format!("{at}: a patch, but this page is replayed in place"));
            }
            "diff" => {
                git_apply(&work, &block.body, false).map_err(|e| format!("{at}: {e}"))?;
                if block.has("mistake") {
                    mistakes.push(&block.body);
                }
                replayed += 1;
            }
            "sh" if !block.has("no-replay") => {
                let must_fail = block.has("fails");
                let mut output = String::new();
                for line in block.body.lines().map(str::trim) {
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    // pvi-sim and `--accel kvm` need /dev/kvm.
                    let needs_kvm = ["--sim", "--accel kvm", "pvi-sim --"];
                    if needs_kvm.iter().any(|k| line.contains(k)) {
                        if let Err(why) = &kvm {
                            println!("    skipped (no KVM: {why}): {line}");
                            skipped.push(format!("`{line}`: {why}"));
                            continue;
                        }
                    }
                    let (ok, text) = sh(&work, line, target_dir.as_deref())?;
                    output.push_str(&text);
                    if ok == must_fail {
                        let what = if must_fail {
                            "succeeded but the guide says it fails"
                        } else {
                            "failed"
                        };
                        return Err(format!("{at}: `{line}` {what}:\n{text}"));
                    }
                }
                let expected = blocks
                    .get(n + 1)
                    .filter(|b| b.kind() == "text" && b.has("output"));
                if let Some(expected) = expected {
                    if let Some(want) = missing_line(&expected.body, &output) {
                        return Err(format!(
                            "{at}: the output has no line `{want}`; it was:\n{output}"
                        ));
                    }
                }
                for patch in mistakes.drain(..) {
                    git_apply(&work, patch, true)
                        .map_err(|e| format!("{at}: undoing the mistake: {e}"))?;
                }
                replayed += 1;
            }
            _ => {}
        }
    }
    if replayed == 0 {
        return Err(format!("{}: nothing to replay", path.display()));
    }
    if let Some(limit) = guide.hand_written {
        let changes = crate::diffstat::changes(root, &work)
            .map_err(|e| format!("comparing the copy with the repository: {e}"))?;
        print!("{}", crate::diffstat::render(&changes));
        let by_hand = changes
            .iter()
            .filter(|c| c.author == crate::diffstat::Author::Person)
            .count();
        if by_hand > limit {
            return Err(format!(
                "{}: the guide has its reader write {by_hand} files besides tests, more than {limit}",
                path.display()
            ));
        }
    }
    println!(
        "    {}: {replayed} blocks replayed in {}",
        path.display(),
        work.display()
    );
    Ok(skipped)
}

/// A page of the book whose commands are replayed.
pub struct Guide {
    /// The step's name.
    pub name: &'static str,
    /// The page.
    pub path: &'static str,
    /// Whether it changes files (then it runs on a copy of the repository).
    pub on_a_copy: bool,
    /// At most how many files outside `tests/` its reader writes by hand
    /// (the replay prints what it changed, and fails above this).
    pub hand_written: Option<usize>,
}

/// The pages whose commands `cargo xtask test` replays.
pub const GUIDES: &[Guide] = &[
    Guide {
        name: "book: the IDL guide, replayed on a copy of the repository",
        path: "book/src/guide-idl.md",
        on_a_copy: true,
        hand_written: None,
    },
    Guide {
        name: "book: the backend guide, replayed on a copy of the repository",
        path: "book/src/guide-backend.md",
        on_a_copy: true,
        // The IDL file, the backend file, the cargo feature that builds it.
        hand_written: Some(3),
    },
    Guide {
        name: "book: the quick start's commands",
        path: "book/src/quickstart.md",
        on_a_copy: false,
        hand_written: None,
    },
    Guide {
        name: "book: the boot guide's commands",
        path: "book/src/kernel.md",
        on_a_copy: false,
        hand_written: None,
    },
    Guide {
        name: "book: the pvi-sim chapter's commands",
        path: "book/src/sim.md",
        on_a_copy: false,
        hand_written: None,
    },
    Guide {
        name: "book: the Xen PV chapter's commands",
        path: "book/src/xen-pv.md",
        on_a_copy: false,
        hand_written: None,
    },
    Guide {
        name: "book: the your-kernel chapter's commands (the outside kernel, TCG)",
        path: "book/src/your-kernel.md",
        on_a_copy: false,
        hand_written: None,
    },
];

/// Replay every guide, a step each; one whose commands could not all run
/// here counts as skipped, saying which and why.
pub fn steps(root: &Path, steps: &mut Vec<Step>) {
    for guide in GUIDES {
        println!("\n==> {}", guide.name);
        let start = Instant::now();
        let outcome = match replay(root, guide) {
            Ok(skipped) if skipped.is_empty() => Outcome::Passed,
            Ok(skipped) => Outcome::Skipped(format!(
                "{} command(s) could not run here: {}",
                skipped.len(),
                skipped.join("; ")
            )),
            Err(e) => {
                println!("{e}");
                Outcome::Failed
            }
        };
        crate::steps::finish(guide.name, outcome, start, steps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_lines_must_each_be_an_output_line() {
        let output = "Compiling x\nerror: 1 problem(s) found  \n";
        assert_eq!(
            missing_line("…\nerror: 1 problem(s) found\n\n", output),
            None
        );
        assert_eq!(
            missing_line("error: 2 problem(s)", output),
            Some("error: 2 problem(s)")
        );
    }

    #[test]
    fn blocks_keep_their_attributes_and_text() {
        let b =
            blocks("x\n\n```sh,fails\ncargo pvi check idl\n```\n\n```text,output\nerror\n```\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].kind(), "sh");
        assert!(b[0].has("fails") && !b[0].has("no-replay"));
        assert_eq!(b[0].body, "cargo pvi check idl\n");
        assert_eq!(b[1].kind(), "text");
        assert!(b[1].has("output"));
    }
}
