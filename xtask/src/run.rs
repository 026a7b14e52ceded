//! `cargo xtask run`: build the example kernel and boot it in QEMU.

use crate::qemu::{self, Accel, Boot, EXIT_FAILURE, EXIT_POWERED_OFF, EXIT_SUCCESS};
use std::process::ExitCode;

/// Build and boot: KVM when /dev/kvm works (unless `accel` says), else TCG.
pub fn run(
    accel: Option<Accel>,
    smp: u32,
    backend: Option<&str>,
    fault: Option<&str>,
    release: bool,
    xen_log: bool,
    words: &[String],
) -> ExitCode {
    let accel = match (accel, qemu::kvm_usable()) {
        (Some(a), Err(why)) if a.needs_kvm() => {
            eprintln!("xtask run: {} needs KVM, but {why}", a.name());
            return ExitCode::FAILURE;
        }
        (Some(a), _) => a,
        (None, Ok(())) => Accel::Kvm,
        (None, Err(why)) => {
            println!("xtask run: KVM unavailable ({why}); booting under TCG");
            Accel::Tcg
        }
    };
    let prepared = match accel {
        Accel::Sim(_) => {
            println!("xtask run: building pvi-sim");
            qemu::build_sim().map(|_| ())
        }
        Accel::XenDom0 | Accel::XenPvh { .. } | Accel::XenPv => qemu::provision().and_then(|()| {
            let xen = crate::xen::provision()?;
            if accel.under_linux_dom0().is_some() {
                crate::dom0::provision()?;
            }
            println!(
                "xtask run: Xen is {} (Xen's own lines {})",
                xen.display(),
                if xen_log {
                    "shown"
                } else {
                    "hidden; --xen-log shows them"
                }
            );
            Ok(())
        }),
        _ => qemu::provision(),
    };
    if let Err(e) = prepared {
        eprintln!("xtask run: {e}");
        return ExitCode::FAILURE;
    }
    let profile = if release { "optimized" } else { "debug" };
    println!("xtask run: building the example kernel ({profile})");
    let kernel = match qemu::build_kernel(release) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("xtask run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmdline: Vec<String> = words.to_vec();
    // Self-tests under KVM call ops a hypercall serves; where a vmcall
    // never returns (nested KVM), they must skip those instead of hanging.
    let selftest = words.iter().any(|w| w == "selftest");
    let already = words.iter().any(|w| w == "selftest.no-hypercalls");
    if accel == Accel::Kvm && selftest && !already {
        match crate::probe::kvm_hypercalls_cached(&kernel) {
            Some(true) => {}
            Some(false) => {
                println!("xtask run: a KVM vmcall does not return on this host: adding selftest.no-hypercalls (those tests are skipped, saying why)");
                cmdline.push("selftest.no-hypercalls".into());
            }
            None => {
                println!("xtask run: could not tell whether a KVM vmcall returns here: adding selftest.no-hypercalls rather than risk a hang");
                cmdline.push("selftest.no-hypercalls".into());
            }
        }
    }
    if let Some(b) = backend {
        cmdline.push(format!("pvi.backend={b}"));
    }
    let cmdline = cmdline.join(" ");
    println!(
        "xtask run: booting {} under {} with {smp} CPU(s), command line {cmdline:?}",
        kernel.display(),
        accel.name()
    );
    let fault_args: Vec<&str> = fault.map(|f| vec!["--fault", f]).unwrap_or_default();
    let boot = Boot {
        kernel: &kernel,
        accel,
        smp,
        cpu_extra: "",
        cmdline: &cmdline,
        vm_args: &fault_args,
    };
    let ended = if accel.is_xen() {
        guest_lines_retrying_dom0(&boot, xen_log)
    } else {
        boot.interactive()
    };
    match ended {
        Ok(EXIT_SUCCESS) => ExitCode::SUCCESS,
        Ok(EXIT_POWERED_OFF) => {
            println!("xtask run: the kernel powered the machine off");
            ExitCode::SUCCESS
        }
        Ok(EXIT_FAILURE) => {
            eprintln!("xtask run: the kernel reported failure");
            ExitCode::FAILURE
        }
        Ok(code) => {
            eprintln!("xtask run: QEMU exited with status {code} (the kernel did not report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A Xen boot on this terminal; under a Linux dom0, booted once more if
/// the dom0 never reaches its toolstack (it hangs in its own xenbus probe
/// about once in 20 boots under TCG, before any pvi code runs), as
/// `cargo xtask test` does, and said so.
fn guest_lines_retrying_dom0(boot: &Boot, xen_log: bool) -> Result<i32, String> {
    let Some(milestone) = boot
        .accel
        .under_linux_dom0()
        .map(|_| crate::matrix::dom0_milestone())
    else {
        return boot
            .interactive_guest_lines(xen_log, None)
            .map(|c| c.unwrap_or(-1));
    };
    for attempt in 1..=2 {
        if let Some(code) = boot.interactive_guest_lines(xen_log, Some(&milestone))? {
            return Ok(code);
        }
        println!(
            "xtask run: the Linux dom0 did not reach its toolstack within {} s (no pvi code ran){}",
            milestone.within.as_secs(),
            if attempt == 1 {
                "; booting again"
            } else {
                ", twice"
            }
        );
    }
    Err("the Linux dom0 hung twice before starting the kernel".into())
}
