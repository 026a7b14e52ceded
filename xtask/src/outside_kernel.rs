//! The kernel outside the tree (`tests/outside-kernel/`, the book's "Use
//! pvi in your kernel"): linted, built lower-half with no linker script and
//! higher-half with its own, and booted each way under TCG and KVM.

use crate::cargo::cargo_in;
use crate::qemu::{Accel, Boot, EXIT_SUCCESS};
use crate::steps::{finish, Outcome, Step};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DIR: &str = "tests/outside-kernel";

/// How long one boot may take: it prints five lines.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One way to link the kernel, and its steps' names.
struct Link {
    half: &'static str,
    features: &'static [&'static str],
    build_step: &'static str,
    /// The boot steps: under TCG, then under KVM.
    boot_steps: [(Accel, &'static str); 2],
}

const LINKS: [Link; 2] = [
    Link {
        half: "lower",
        features: &[],
        build_step: "outside kernel: build, lower half, default link",
        boot_steps: [
            (Accel::Tcg, "outside kernel: tcg, lower half"),
            (Accel::Kvm, "outside kernel: kvm, lower half"),
        ],
    },
    Link {
        half: "higher",
        features: &["--features", "higher-half"],
        build_step: "outside kernel: build, higher half, its own linker script",
        boot_steps: [
            (Accel::Tcg, "outside kernel: tcg, higher half"),
            (Accel::Kvm, "outside kernel: kvm, higher half"),
        ],
    },
];

/// Lint, build and boot; one step each.
pub fn steps(steps: &mut Vec<Step>) {
    lint(steps);
    let mut kernels = Vec::new();
    for link in &LINKS {
        let name = link.build_step;
        println!("\n==> {name}");
        let start = Instant::now();
        match build(link) {
            Ok(kernel) => {
                finish(name, Outcome::Passed, start, steps);
                kernels.push((link, Some(kernel)));
            }
            Err(why) => {
                println!("    {why}");
                finish(name, Outcome::Failed, start, steps);
                kernels.push((link, None));
            }
        }
    }
    let kvm = crate::qemu::kvm_usable();
    for (link, kernel) in &kernels {
        for (accel, name) in link.boot_steps {
            println!("\n==> {name}");
            let start = Instant::now();
            let outcome = match (kernel, accel, &kvm) {
                (_, Accel::Kvm, Err(why)) => Outcome::Skipped(why.clone()),
                (None, ..) => {
                    println!("    not built");
                    Outcome::Failed
                }
                (Some(kernel), ..) => match boot(kernel, link.half, accel) {
                    Ok(()) => Outcome::Passed,
                    Err(why) => {
                        println!("    {why}");
                        Outcome::Failed
                    }
                },
            };
            finish(name, outcome, start, steps);
        }
    }
}

fn lint(steps: &mut Vec<Step>) {
    for (name, args) in [
        (
            "outside kernel: rustfmt --check",
            &["fmt", "--", "--check"][..],
        ),
        (
            "outside kernel: clippy -D warnings (both links)",
            &["clippy", "--all-features", "--", "-D", "warnings"][..],
        ),
    ] {
        println!("\n==> {name}");
        let start = Instant::now();
        let ok = cargo_in(DIR).args(args).status().is_ok_and(|s| s.success());
        let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
        finish(name, outcome, start, steps);
    }
}

/// Build one link; a copy of the ELF that the other build does not
/// overwrite.
fn build(link: &Link) -> Result<PathBuf, String> {
    let built = cargo_in(DIR)
        .args(["build", "--release", "--quiet"])
        .args(link.features)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        return Err("did not build".into());
    }
    let elf = Path::new(DIR).join("target/x86_64-unknown-none/release/outside-kernel");
    let copy = PathBuf::from(format!("target/boot/outside-kernel-{}-half", link.half));
    std::fs::create_dir_all("target/boot").map_err(|e| format!("target/boot: {e}"))?;
    std::fs::copy(&elf, &copy).map_err(|e| format!("{}: {e}", elf.display()))?;
    Ok(copy)
}

/// Boot and check the console: where it ran, the backend QEMU's
/// accelerator implies, two clock readings that move forward, and under
/// KVM a hypercall op that was served (or fell back) without a hang.
fn boot(kernel: &Path, half: &str, accel: Accel) -> Result<(), String> {
    let log = PathBuf::from(format!(
        "target/boot/outside-kernel-{half}-{}.log",
        accel.name()
    ));
    let (code, output, took) = Boot {
        kernel,
        accel,
        smp: 1,
        cpu_extra: "",
        cmdline: "",
        vm_args: &[],
    }
    .captured(&log, TIMEOUT)?;
    for line in output.lines().filter(|l| l.starts_with("outside-kernel:")) {
        println!("    {line}");
    }
    println!("    ({:.1} s; log {})", took.as_secs_f64(), log.display());
    let report = parse(&output)?;
    let backend = if accel == Accel::Kvm { "kvm" } else { "native" };
    check(&report, half, backend)?;
    match code {
        Some(EXIT_SUCCESS) => Ok(()),
        Some(other) => Err(format!("QEMU exited with {other}, not {EXIT_SUCCESS}")),
        None => Err(format!("no exit within {} s", TIMEOUT.as_secs())),
    }
}

/// What the kernel printed.
#[derive(Debug, Default, PartialEq)]
struct Report {
    half: Option<String>,
    backend: Option<String>,
    clock: Option<(u64, u64)>,
    yield_to: Option<String>,
}

fn parse(output: &str) -> Result<Report, String> {
    let mut report = Report::default();
    for line in output.lines() {
        let Some(rest) = line.trim_end().strip_prefix("outside-kernel: ") else {
            continue;
        };
        if let Some(rest) = rest.strip_prefix("running in the ") {
            report.half = rest.split(' ').next().map(str::to_string);
        } else if let Some(name) = rest.strip_prefix("backend ") {
            report.backend = Some(name.to_string());
        } else if let Some(rest) = rest.strip_prefix("clock ") {
            let numbers: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            if let [first, second] = numbers[..] {
                report.clock = Some((first, second));
            }
        } else if let Some(how) = rest.strip_prefix("yield_to served ") {
            report.yield_to = Some(how.to_string());
        } else if rest.starts_with("exception") || rest.starts_with("panicked") {
            return Err(rest.to_string());
        }
    }
    Ok(report)
}

fn check(report: &Report, half: &str, backend: &str) -> Result<(), String> {
    if report.half.as_deref() != Some(half) {
        return Err(format!("ran in the {:?} half, not the {half}", report.half));
    }
    if report.backend.as_deref() != Some(backend) {
        return Err(format!("backend {:?}, not {backend}", report.backend));
    }
    match report.clock {
        Some((first, second)) if second > first => {}
        other => return Err(format!("clock readings {other:?} do not move forward")),
    }
    if report.yield_to.is_none() {
        return Err("no yield_to line: the hypercall op did not return".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KVM: &str = "outside-kernel: running in the higher half at 0xffffffff80200460\n\
        outside-kernel: backend kvm\n\
        outside-kernel: clock 5543190141 ns, then 5543346923 ns\n\
        outside-kernel: yield_to served natively\n\
        outside-kernel: 1 hypercall(s) fixed up\n";

    #[test]
    fn a_good_boot_passes() {
        let report = parse(KVM).unwrap();
        assert_eq!(report.clock, Some((5543190141, 5543346923)));
        assert_eq!(check(&report, "higher", "kvm"), Ok(()));
    }

    #[test]
    fn each_missing_or_wrong_fact_fails() {
        let report = parse(KVM).unwrap();
        assert!(check(&report, "lower", "kvm").is_err());
        assert!(check(&report, "higher", "native").is_err());
        let frozen = KVM.replace("then 5543346923", "then 5543190141");
        assert!(check(&parse(&frozen).unwrap(), "higher", "kvm").is_err());
        let hung = KVM.replace("outside-kernel: yield_to served natively\n", "");
        assert!(check(&parse(&hung).unwrap(), "higher", "kvm").is_err());
        assert!(parse("outside-kernel: exception 14 at 0x1, error 0x2, cr2 0x0").is_err());
    }
}
