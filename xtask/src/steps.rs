//! `cargo xtask test`: every check, in order, with a summary at the end.

use crate::provision;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// How a step ended.
pub(crate) enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) outcome: Outcome,
    pub(crate) seconds: f64,
}

use crate::cargo::{cargo, kernel_cargo};

/// The `pvi` command of this checkout, built on demand.
fn pvi(args: &[&str]) -> Command {
    let mut command = cargo();
    command
        .args([
            "run",
            "--quiet",
            "--package",
            "pvi-codegen",
            "--bin",
            "pvi",
            "--",
        ])
        .args(args);
    command
}

fn run(name: &'static str, mut command: Command, steps: &mut Vec<Step>) {
    println!("\n==> {name}");
    let start = Instant::now();
    let ok = command.status().is_ok_and(|s| s.success());
    let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
    finish(name, outcome, start, steps);
}

/// Say how step `name`, begun at `start`, ended, and add it to `steps`.
pub(crate) fn finish(name: &'static str, outcome: Outcome, start: Instant, steps: &mut Vec<Step>) {
    let seconds = start.elapsed().as_secs_f64();
    let verdict = match outcome {
        Outcome::Passed => "ok",
        Outcome::Failed => "FAILED",
        Outcome::Skipped(_) => "skipped",
    };
    println!("==> {name}: {verdict} ({seconds:.1}s)");
    steps.push(Step {
        name,
        outcome,
        seconds,
    });
}

/// Run every step even after a failure, so one run shows every problem.
pub fn test(bless: bool) -> ExitCode {
    let mut steps = Vec::new();
    if !provision::toolchain() {
        steps.push(Step {
            name: "toolchain",
            outcome: Outcome::Failed,
            seconds: 0.0,
        });
    }

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run("rustfmt --check", fmt, &mut steps);

    run(
        "pvi fmt --check idl",
        pvi(&["fmt", "--check", "idl"]),
        &mut steps,
    );
    run("pvi check idl", pvi(&["check", "idl"]), &mut steps);
    match released_baseline() {
        Some(baseline) => run(
            "pvi compat: idl/ against the last released interface",
            pvi(&["compat", &baseline, "idl"]),
            &mut steps,
        ),
        None => steps.push(Step {
            name: "pvi compat: idl/ against the last released interface",
            outcome: Outcome::Failed,
            seconds: 0.0,
        }),
    }

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run("clippy -D warnings", clippy, &mut steps);

    // The crates a kernel outside this tree depends on (and their tools):
    // every doc comment resolves. The fixture SDK is a test of the
    // generator, not a crate anyone reads.
    let mut doc = cargo();
    doc.args(["doc", "--no-deps"])
        .args([
            "-p",
            "pvi-sdk",
            "-p",
            "pvi-backends",
            "-p",
            "pvi-codegen",
            "-p",
            "pvi-sim",
        ])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(
        "rustdoc -D warnings (pvi-sdk, pvi-backends, pvi-codegen, pvi-sim)",
        doc,
        &mut steps,
    );

    // Packaging only: each crate is packed and built from its package, the
    // others it depends on through a local registry; nothing is uploaded.
    forget_packaged_crates();
    let mut publish = cargo();
    publish
        .args(["publish", "--dry-run", "--allow-dirty", "--quiet"])
        .args(["-p", "pvi-sdk", "-p", "pvi-backends", "-p", "pvi-codegen"])
        .env("CARGO_TARGET_DIR", PUBLISH_TARGET);
    run(
        "cargo publish --dry-run (pvi-sdk, pvi-backends, pvi-codegen)",
        publish,
        &mut steps,
    );

    msrv(&mut steps);

    let mut kernel_build = cargo();
    kernel_build
        .args([
            "build",
            "--package",
            "pvi-sdk",
            "--target",
            "x86_64-unknown-none",
        ])
        .env("RUSTFLAGS", "-D warnings");
    run(
        "pvi-sdk builds for x86_64-unknown-none, no warnings",
        kernel_build,
        &mut steps,
    );

    let mut kernel_clippy = cargo();
    kernel_clippy.args([
        "clippy",
        "--package",
        "pvi-sdk",
        "--target",
        "x86_64-unknown-none",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "clippy -D warnings (x86_64-unknown-none)",
        kernel_clippy,
        &mut steps,
    );

    // The backends for the kernel target: all of them, and bare metal alone
    // (which must build without any hypervisor's code).
    let mut backends = cargo();
    backends.args([
        "clippy",
        "--package",
        "pvi-backends",
        "--target",
        "x86_64-unknown-none",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "pvi-backends, all backends, x86_64-unknown-none, clippy -D warnings",
        backends,
        &mut steps,
    );
    let mut native_only = cargo();
    native_only.args([
        "clippy",
        "--package",
        "pvi-backends",
        "--no-default-features",
        "--target",
        "x86_64-unknown-none",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "pvi-backends, native only, x86_64-unknown-none, clippy -D warnings",
        native_only,
        &mut steps,
    );

    // The example kernel is its own workspace (it builds only for the
    // kernel target): its formatting and lints.
    let mut kernel_fmt = kernel_cargo();
    kernel_fmt.args(["fmt", "--", "--check"]);
    run("example kernel: rustfmt --check", kernel_fmt, &mut steps);
    let mut kernel_lint = kernel_cargo();
    kernel_lint.args(["clippy", "--", "-D", "warnings"]);
    run(
        "example kernel: clippy -D warnings",
        kernel_lint,
        &mut steps,
    );
    let mut bare_kernel = kernel_cargo();
    bare_kernel.args(["clippy", "--no-default-features", "--", "-D", "warnings"]);
    run(
        "example kernel, bare metal only: clippy -D warnings",
        bare_kernel,
        &mut steps,
    );

    // The fixture's golden code with every interface feature on: gated
    // items must compile and lint clean too.
    let mut gated = cargo();
    gated.args([
        "clippy",
        "--package",
        "pvi-fixture-sdk",
        "--all-features",
        "--target",
        "x86_64-unknown-none",
        "--",
        "-D",
        "warnings",
    ]);
    run(
        "fixture SDK, every interface feature, clippy -D warnings",
        gated,
        &mut steps,
    );

    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    if bless {
        tests.env("PVI_BLESS", "1");
    }
    run(
        "cargo test (corpus, upstream, fmt, property test, codegen golden and freshness, conformance)",
        tests,
        &mut steps,
    );

    crate::book::all_steps(&mut steps);

    inspect_kernel(&mut steps);

    crate::matrix::boots(&mut steps);

    crate::outside_kernel::steps(&mut steps);

    summarize(&steps)
}

/// Where `cargo publish --dry-run` builds the packed crates.
const PUBLISH_TARGET: &str = "target/publish";

/// Cargo takes a crate from a registry to be immutable: the local registry
/// of a dry run unpacks `pvi-sdk-0.1.0` into `$CARGO_HOME/registry/src/`
/// and builds it into the target directory once, and a later dry run of
/// changed sources at the same version would build the stale copy. So
/// both go before each dry run (a fresh machine has neither).
fn forget_packaged_crates() {
    let _ = std::fs::remove_dir_all(PUBLISH_TARGET);
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(sources) = home.map(|h| h.join("registry/src")) else {
        return;
    };
    // The local registry's directory is named "-" and a hash; crates.io's
    // are named after its index.
    let local = std::fs::read_dir(&sources)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with('-'));
    for registry in local {
        for unpacked in std::fs::read_dir(registry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = unpacked.file_name().to_string_lossy().into_owned();
            if ["pvi-sdk-", "pvi-backends-", "pvi-codegen-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                let _ = std::fs::remove_dir_all(unpacked.path());
            }
        }
    }
}

/// The published crates build with the oldest Rust they promise: the guest
/// crates for the kernel target, the generator for the host. In a target
/// directory of its own, so that the pinned toolchain's builds stay warm.
fn msrv(steps: &mut Vec<Step>) {
    let name: &'static str = Box::leak(
        format!(
            "MSRV: pvi-sdk, pvi-backends (x86_64-unknown-none) and pvi-codegen build with Rust {}",
            provision::MSRV
        )
        .into_boxed_str(),
    );
    println!("\n==> {name}");
    let start = Instant::now();
    // The promise is the manifests': they must say what is checked.
    let promised = format!("rust-version = \"{}\"", provision::MSRV);
    let stale: Vec<&str> = ["sdk", "backends", "codegen"]
        .into_iter()
        .filter(|dir| {
            !std::fs::read_to_string(format!("{dir}/Cargo.toml"))
                .is_ok_and(|m| m.lines().any(|l| l.trim() == promised))
        })
        .collect();
    if !stale.is_empty() {
        println!("    {} do(es) not say `{promised}`", stale.join(", "));
        return finish(name, Outcome::Failed, start, steps);
    }
    let toolchain = format!("+{}", provision::MSRV);
    let check = |args: &[&str]| {
        Command::new("cargo")
            .arg(&toolchain)
            .args(["check", "--quiet"])
            .args(args)
            .env("CARGO_TARGET_DIR", "target/msrv")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = provision::msrv_toolchain()
        && check(&[
            "-p",
            "pvi-sdk",
            "-p",
            "pvi-backends",
            "--target",
            "x86_64-unknown-none",
        ])
        && check(&["-p", "pvi-codegen"]);
    let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
    finish(name, outcome, start, steps);
}

/// The lock of the newest released interface version in `idl/released/`
/// (`MAJOR.MINOR.PATCH.lock`): what `idl/` must stay compatible with,
/// unless its major version moved on.
fn released_baseline() -> Option<String> {
    let version = |p: &std::path::Path| -> Option<Vec<u64>> {
        let stem = p.file_stem()?.to_str()?;
        stem.split('.').map(|n| n.parse().ok()).collect()
    };
    std::fs::read_dir("idl/released")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .filter_map(|p| version(&p).map(|v| (v, p)))
        .max()
        .map(|(_, p)| p.display().to_string())
}

/// `pvi inspect` reads the example kernel's `.note.pvi`: the interface it
/// was built for and every backend it links.
fn inspect_kernel(steps: &mut Vec<Step>) {
    let name = "pvi inspect: the example kernel's .note.pvi";
    println!("\n==> {name}");
    let start = Instant::now();
    let kernel = match crate::qemu::build_kernel(false) {
        Ok(k) => k,
        Err(e) => {
            println!("{e}");
            return finish(name, Outcome::Failed, start, steps);
        }
    };
    let kernel = kernel.display().to_string();
    let output = pvi(&["inspect", &kernel]).output();
    let text = output
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    print!("{text}");
    let want = [
        format!("interface:   pvi {}", interface_version()),
        "built for:   ".to_string(),
        "backends:    native,hyperv,kvm,vmware,xen".to_string(),
    ];
    let missing: Vec<&String> = want.iter().filter(|w| !text.contains(w.as_str())).collect();
    let ok = output.is_ok_and(|o| o.status.success()) && missing.is_empty();
    if !missing.is_empty() {
        println!("missing from the output: {missing:?}");
    }
    finish(
        name,
        if ok { Outcome::Passed } else { Outcome::Failed },
        start,
        steps,
    );
}

/// The interface version idl/pvi.pvi declares.
fn interface_version() -> String {
    std::fs::read_to_string("idl/pvi.pvi")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("interface pvi "))
                .map(|v| v.trim_end_matches(';').to_string())
        })
        .unwrap_or_default()
}

pub(crate) fn summarize(steps: &[Step]) -> ExitCode {
    println!("\nxtask test summary:");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for step in steps {
        let status = match &step.outcome {
            Outcome::Passed => {
                passed += 1;
                "ok".to_string()
            }
            Outcome::Failed => {
                failed += 1;
                "FAILED".to_string()
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                format!("skipped: {why}")
            }
        };
        println!("  {:<8.1}s {:<40} {status}", step.seconds, step.name);
    }
    println!("steps: {passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
