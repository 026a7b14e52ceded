//! Making sure the machine has what the commands need: the pinned
//! toolchain's target and components (rustup does not add a missing target
//! to an already installed toolchain).

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf()
}

fn installed(what: &str) -> Option<String> {
    let out = Command::new("rustup")
        .args([what, "list", "--installed"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Add the kernel target and the lint and format components if missing.
/// Returns false (after saying why) if they cannot be had.
pub fn toolchain() -> bool {
    let Some(targets) = installed("target") else {
        println!("xtask: rustup not found; assuming the toolchain is complete (need x86_64-unknown-none, rustfmt, clippy)");
        return true;
    };
    let mut ok = true;
    if !targets.lines().any(|t| t.trim() == "x86_64-unknown-none") {
        println!("xtask: adding the kernel target x86_64-unknown-none");
        ok &= Command::new("rustup")
            .args(["target", "add", "x86_64-unknown-none"])
            .status()
            .is_ok_and(|s| s.success());
    }
    let components = installed("component").unwrap_or_default();
    for component in ["rustfmt", "clippy"] {
        if !components.lines().any(|c| c.starts_with(component)) {
            println!("xtask: adding the {component} component");
            ok &= Command::new("rustup")
                .args(["component", "add", component])
                .status()
                .is_ok_and(|s| s.success());
        }
    }
    if !ok {
        println!("xtask: could not complete the toolchain; run `rustup toolchain install` in the repository");
    }
    ok
}

/// The oldest Rust the published crates promise (their `rust-version`).
pub const MSRV: &str = "1.92";

/// The MSRV toolchain with the kernel target, installed (minimal profile)
/// when missing. Returns false (after saying why) if it cannot be had.
pub fn msrv_toolchain() -> bool {
    let has = Command::new("rustup")
        .args([
            "+".to_string() + MSRV,
            "target".into(),
            "list".into(),
            "--installed".into(),
        ])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|t| t.trim() == "x86_64-unknown-none")
        });
    if has {
        return true;
    }
    println!("xtask: installing Rust {MSRV} (minimal, with x86_64-unknown-none) to check the crates' MSRV");
    let ok = Command::new("rustup")
        .args(["toolchain", "install", MSRV, "--profile", "minimal"])
        .args(["--target", "x86_64-unknown-none"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("xtask: Rust {MSRV} could not be installed");
    }
    ok
}

/// The mdBook version the book is built with.
pub const MDBOOK_VERSION: &str = "0.5";

/// `mdbook`, installed with `cargo install --locked` when missing.
/// Returns false (after saying why) if it cannot be had.
pub fn mdbook() -> bool {
    let works = || {
        Command::new("mdbook")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return true;
    }
    println!(
        "xtask: mdbook not found; installing it: cargo install --locked mdbook --version ^{MDBOOK_VERSION} (a few minutes, once)"
    );
    let installed = crate::cargo::cargo()
        .args(["install", "--locked", "mdbook", "--version"])
        .arg(format!("^{MDBOOK_VERSION}"))
        .status()
        .is_ok_and(|s| s.success());
    if !installed || !works() {
        println!("xtask: could not install mdbook; install it with `cargo install --locked mdbook` and make sure ~/.cargo/bin is on PATH");
        return false;
    }
    true
}
