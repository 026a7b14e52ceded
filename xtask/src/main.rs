//! `cargo xtask`: the project's commands. Each provisions what it lacks and
//! says what it is doing.

mod bench;
mod book;
mod cargo;
mod chart;
mod codegen;
mod cost_model;
mod cpio;
mod diffstat;
mod dom0;
mod exit_bench;
mod exit_claims;
mod exit_report;
mod guide;
mod hypervisors;
mod kernel_bench;
mod matrix;
mod outside_kernel;
mod probe;
mod provision;
mod qemu;
mod run;
mod scratch;
mod size;
mod steps;
mod verified;
mod xen;
mod xen_pv;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test, run and measure pvi")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything CI runs: formatting, lints, the IDL checks and every test.
    Test {
        /// Rewrite expected-output files (the IDL error corpus) instead of
        /// comparing against them; review the diff before committing.
        #[arg(long)]
        bless: bool,
    },
    /// Build the example kernel and boot it in QEMU (KVM when /dev/kvm
    /// works, else TCG).
    Run {
        /// `kvm` or `tcg`; default: KVM when /dev/kvm works.
        #[arg(long, value_parser = ["kvm", "tcg"])]
        accel: Option<String>,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        smp: u32,
        /// Boot under pvi-sim instead of QEMU, as this hypervisor (`none`,
        /// `kvm`, `xen`, `hyperv` or `vmware`).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SIM_PERSONALITIES), conflicts_with = "accel")]
        sim: Option<String>,
        /// Boot under the real Xen 4.17 (Debian's packages, fetched, not
        /// installed) in QEMU TCG: `dom0`, the kernel as Xen's PVH
        /// hardware domain with --smp vCPUs; `pvh`, the kernel as a PVH
        /// domU with --smp vCPUs, started by a Linux dom0's `xl`; `pv`,
        /// the same as a 64-bit PV domU (its Xen PV entry: the PV checks
        /// with `pvi-pv-check`, then the self-tests with `selftest`).
        #[arg(long, value_parser = ["dom0", "pvh", "pv"], conflicts_with_all = ["accel", "sim"])]
        xen: Option<String>,
        /// With --xen: show Xen's own `(XEN)` lines too.
        #[arg(long, requires = "xen")]
        xen_log: bool,
        /// With --xen pvh: turn on Xen's Hyper-V emulation (viridian) for
        /// the domU, so that it sees "Microsoft Hv" stacked over Xen.
        #[arg(long, requires = "xen")]
        viridian: bool,
        /// With --sim: misbehave on purpose (`pvi-sim --help` lists the
        /// faults, e.g. `pvclock-stuck-odd`).
        #[arg(long, requires = "sim")]
        fault: Option<String>,
        /// Force a backend (`pvi.backend=NAME`): native, or a hypervisor
        /// detection finds.
        #[arg(long)]
        backend: Option<String>,
        /// Boot the optimized build (what `cargo xtask bench` measures).
        #[arg(long)]
        release: bool,
        /// Words for the kernel command line (`demo`, `selftest`, …).
        #[arg(last = true)]
        words: Vec<String>,
    },
    /// Build the kernel outside the tree (tests/outside-kernel, the book's
    /// "Use pvi in your kernel") lower-half and higher-half, and boot each
    /// under TCG and KVM; `cargo xtask test` runs the same steps.
    OutsideKernel,
    /// Measure: the toolchain's speed and the example kernel's code size;
    /// writes target/bench/report.json and report.md.
    Bench,
    /// Build the book with mdBook (installed when missing) and run
    /// `mdbook test`; any mdBook warning fails.
    Book,
    /// Regenerate every artifact from idl/: the SDK's sources, the
    /// conformance tests' trapping stubs, the book's reference pages.
    Codegen {
        /// Also rewrite the generator's golden snapshots and the error
        /// corpus's expected reports; review the diff before committing.
        #[arg(long)]
        bless: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = provision::workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: cannot enter {}: {e}", root.display());
        return ExitCode::from(2);
    }
    // Every command but `test` (which counts it as a step) builds the
    // kernel or its tools: the pinned toolchain's target comes first.
    if !matches!(cli.command, Command::Test { .. }) && !provision::toolchain() {
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Test { bless } => steps::test(bless),
        Command::Run {
            accel,
            sim,
            xen,
            xen_log,
            viridian,
            fault,
            smp,
            backend,
            release,
            words,
        } => {
            // An unknown name would only be ignored by the kernel, after a
            // boot: refuse it here, as clap refuses an unknown `--sim`.
            if let Some(name) = backend.as_deref() {
                let known = match hypervisors::names() {
                    Ok(names) => names,
                    Err(e) => {
                        eprintln!("xtask run: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                if name != "native" && !known.iter().any(|k| k == name) {
                    eprintln!(
                        "xtask run: --backend {name}: not a backend; the possible values are native, {}",
                        known.join(", ")
                    );
                    return ExitCode::from(2);
                }
            }
            let accel = match (sim.as_deref(), accel.as_deref()) {
                _ if xen.as_deref() == Some("pvh") => Some(qemu::Accel::XenPvh { viridian }),
                _ if xen.as_deref() == Some("pv") && !viridian => Some(qemu::Accel::XenPv),
                _ if viridian => {
                    eprintln!("xtask run: --viridian needs --xen pvh (Xen emulates Hyper-V for its HVM and PVH guests)");
                    return ExitCode::from(2);
                }
                _ if xen.is_some() => Some(qemu::Accel::XenDom0),
                (Some(p), _) => Some(qemu::Accel::Sim(sim_personality(p))),
                (None, Some("kvm")) => Some(qemu::Accel::Kvm),
                (None, Some(_)) => Some(qemu::Accel::Tcg),
                (None, None) => None,
            };
            run::run(
                accel,
                smp,
                backend.as_deref(),
                fault.as_deref(),
                release,
                xen_log,
                &words,
            )
        }
        Command::OutsideKernel => {
            if let Err(why) = qemu::provision() {
                eprintln!("xtask outside-kernel: {why}");
                return ExitCode::FAILURE;
            }
            let mut steps = Vec::new();
            outside_kernel::steps(&mut steps);
            steps::summarize(&steps)
        }
        Command::Bench => bench::bench(),
        Command::Book => book::book(),
        Command::Codegen { bless } => codegen::codegen(bless),
    }
}

/// pvi-sim's personalities: the one list `--sim` accepts and maps.
const SIM_PERSONALITIES: [&str; 5] = ["none", "kvm", "xen", "hyperv", "vmware"];

/// The `'static` name of a personality clap accepted (clap refuses any
/// other, listing these, with status 2).
fn sim_personality(name: &str) -> &'static str {
    SIM_PERSONALITIES
        .into_iter()
        .find(|p| *p == name)
        .expect("clap accepts only SIM_PERSONALITIES")
}
