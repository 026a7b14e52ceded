//! What a replayed guide changed, file by file, against the repository it
//! was copied from: which files a person wrote (and how many lines), which
//! are tests, and which the generators wrote. The backend guide promises a
//! new hypervisor costs at most a few hand-written files; this counts them.

use crate::scratch::SKIP;
use std::fs;
use std::path::{Path, PathBuf};

/// One file the guide added or changed.
pub struct Change {
    /// Its path, relative to the repository root.
    pub path: PathBuf,
    /// Lines added and removed (a longest-common-subsequence diff).
    pub added: usize,
    /// Lines removed.
    pub removed: usize,
    /// Who wrote it.
    pub author: Author,
}

/// Who wrote a changed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    /// A person following the guide, outside `tests/`.
    Person,
    /// A person, under `tests/`.
    Test,
    /// `cargo xtask codegen` (its files say so, or it maintains them).
    Generator,
}

/// Files the generators maintain without a generated-file header.
const MAINTAINED: &[&str] = &["book/src/SUMMARY.md"];

/// Every file of `work` that is new or differs from the one in `original`.
pub fn changes(original: &Path, work: &Path) -> std::io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(work, work, original, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, original: &Path, out: &mut Vec<Change>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if SKIP.iter().any(|s| relative == Path::new(s)) {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, original, out)?;
            continue;
        }
        // Bytes, not text: the IDL error corpus holds invalid UTF-8 on purpose.
        let new = fs::read(&path)?;
        let old = fs::read(original.join(&relative)).ok();
        if old.as_deref() == Some(new.as_slice()) {
            continue;
        }
        let new = String::from_utf8_lossy(&new).into_owned();
        let old = String::from_utf8_lossy(&old.unwrap_or_default()).into_owned();
        let common = common_lines(&old, &new);
        let author = if pvi_codegen::artifacts::is_generated(&new)
            || MAINTAINED.iter().any(|m| relative == Path::new(m))
        {
            Author::Generator
        } else if relative.starts_with("tests") {
            Author::Test
        } else {
            Author::Person
        };
        out.push(Change {
            added: new.lines().count() - common,
            removed: old.lines().count() - common,
            path: relative,
            author,
        });
    }
    Ok(())
}

/// The length of the longest common subsequence of the two texts' lines.
fn common_lines(a: &str, b: &str) -> usize {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let mut row = vec![0usize; b.len() + 1];
    for x in &a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The changes as `git diff --stat` would list them, by author.
pub fn render(changes: &[Change]) -> String {
    let mut s = String::new();
    for (author, title) in [
        (Author::Person, "written by hand or by pvi new-backend"),
        (Author::Test, "tests"),
        (Author::Generator, "written by cargo xtask codegen"),
    ] {
        let of: Vec<&Change> = changes.iter().filter(|c| c.author == author).collect();
        s.push_str(&format!("    {title}: {} file(s)\n", of.len()));
        if author == Author::Generator {
            continue;
        }
        for c in of {
            s.push_str(&format!(
                "      {:<28} +{} -{}\n",
                c.path.display(),
                c.added,
                c.removed
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::common_lines;

    #[test]
    fn common_lines_is_the_longest_common_subsequence() {
        assert_eq!(common_lines("a\nb\nc\n", "a\nc\n"), 2);
        assert_eq!(common_lines("", "a\n"), 0);
        assert_eq!(common_lines("a\nb\n", "b\na\n"), 1);
    }
}
