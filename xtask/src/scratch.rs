//! A scratch copy of the repository, for work that must not touch the
//! checkout: replaying a guide's patches, timing an IDL edit.

use std::fs;
use std::path::Path;

/// What a copy of the repository leaves out: history and build output.
pub const SKIP: &[&str] = &[".git", "target", "book/book", "example-kernel/target"];

/// Copy the repository to `to`, leaving out [`SKIP`].
pub fn copy_repository(from: &Path, to: &Path) -> std::io::Result<()> {
    fn walk(root: &Path, dir: &Path, to: &Path) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let relative = path.strip_prefix(root).unwrap_or(&path);
            if SKIP.iter().any(|s| relative == Path::new(s)) {
                continue;
            }
            let target = to.join(relative);
            if path.is_dir() {
                fs::create_dir_all(&target)?;
                walk(root, &path, to)?;
            } else {
                fs::copy(&path, &target)?;
            }
        }
        Ok(())
    }
    fs::create_dir_all(to)?;
    walk(from, from, to)
}
