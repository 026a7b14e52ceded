//! The cargo the xtask was run with, for the workspace and for the example
//! kernel's own workspace.

use std::process::Command;

/// The cargo that runs this xtask (`$CARGO`), else `cargo`.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo in `example-kernel/`, its own workspace.
pub fn kernel_cargo() -> Command {
    cargo_in("example-kernel")
}

/// Cargo in `dir`, a kernel's own workspace: its `.cargo/config.toml` sets
/// the target and rustflags; the outer cargo's (xtask's) variables must
/// not leak into it.
pub fn cargo_in(dir: &str) -> Command {
    let mut command = cargo();
    command.current_dir(dir);
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        command.env_remove(var);
    }
    command
}

/// Build one of the workspace's host programs (debug); its path.
pub fn build_host_program(package: &str) -> Result<std::path::PathBuf, String> {
    let built = cargo()
        .args(["build", "--quiet", "-p", package])
        .status()
        .is_ok_and(|s| s.success());
    if built {
        Ok(std::path::PathBuf::from("target/debug").join(package))
    } else {
        Err(format!("{package} did not build"))
    }
}
