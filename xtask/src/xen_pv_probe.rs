//! The first step of the Xen PV work (issue 18): `tests/xen-pv-probe/`, a
//! 64-bit PV kernel, booted as the real Xen 4.17's PV dom0 under QEMU TCG.
//! It must run in ring 3, be handed its `start_info`, and shut down
//! through `sched_op`, which Xen answers for a dom0 by halting the machine.

use crate::cargo::cargo_in;
use crate::steps::{finish, Outcome, Step};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR: &str = "tests/xen-pv-probe";
/// Xen and the probe need about 2 s under TCG here.
const TIMEOUT: Duration = Duration::from_secs(60);
/// What Xen prints when its dom0 shuts down (it halts, and QEMU stays).
const DOM0_HALTED: &str = "Hardware Dom0 halted";

/// Lint and build the probe, then boot it; one step each.
pub fn steps(steps: &mut Vec<Step>) {
    let name = "xen pv probe: rustfmt, clippy -D warnings, build";
    println!("\n==> {name}");
    let start = Instant::now();
    let built = [
        &["fmt", "--", "--check"][..],
        &["clippy", "--release", "--", "-D", "warnings"][..],
        &["build", "--release", "--quiet"][..],
    ]
    .iter()
    .all(|args| {
        cargo_in(DIR)
            .args(*args)
            .status()
            .is_ok_and(|s| s.success())
    });
    finish(
        name,
        if built {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        start,
        steps,
    );
    let name = "xen pv dom0: a 64-bit PV kernel in ring 3 (real Xen 4.17, tcg)";
    println!("\n==> {name}");
    let start = Instant::now();
    let kernel = Path::new(DIR).join("target/x86_64-unknown-none/release/xen-pv-probe");
    let outcome = match crate::xen::provision() {
        Err(why) => {
            println!("    no Xen: {why}");
            Outcome::Failed
        }
        Ok(_) if !built => {
            println!("    not built");
            Outcome::Failed
        }
        Ok(xen) => match boot(xen, &kernel).and_then(|log| check(&log)) {
            Ok(()) => Outcome::Passed,
            Err(why) => {
                println!("    {why}");
                Outcome::Failed
            }
        },
    };
    finish(name, outcome, start, steps);
}

/// Boot Xen with the probe as its dom0 until Xen halts (or the timeout);
/// the serial log.
fn boot(xen: &Path, kernel: &Path) -> Result<String, String> {
    let log = PathBuf::from("target/boot/xen-pv-probe.log");
    std::fs::create_dir_all("target/boot").map_err(|e| format!("target/boot: {e}"))?;
    let _ = std::fs::remove_file(&log);
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1024M"])
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(xen)
        .args([
            "-append",
            "console=com1 com1=115200,8n1 dom0_mem=256M dom0_max_vcpus=1 loglvl=all guest_loglvl=all noreboot iommu=0 smap=0",
        ])
        .arg("-initrd")
        .arg(kernel)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let exited = qemu.try_wait().ok().flatten().is_some();
        if text.contains(DOM0_HALTED) || exited || start.elapsed() > TIMEOUT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    for line in text.lines().filter(|l| l.contains("xen-pv-probe:")) {
        println!("    {}", line.trim_end());
    }
    println!(
        "    ({:.1} s; log {})",
        start.elapsed().as_secs_f64(),
        log.display()
    );
    Ok(text)
}

/// Ring 3, a `start_info`, and Xen's report that its dom0 shut down.
fn check(log: &str) -> Result<(), String> {
    let value = |key: &str| {
        log.lines()
            .find_map(|l| l.split(&format!("xen-pv-probe: {key} 0x")).nth(1))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    if value("ring") != Some(3) {
        return Err(format!("ring {:?}, not 3", value("ring")));
    }
    if value("start_info").unwrap_or(0) == 0 {
        return Err("no start_info".into());
    }
    if !log.contains(DOM0_HALTED) {
        return Err(format!("Xen did not report \"{DOM0_HALTED}\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_3_a_start_info_and_the_halt_are_all_needed() {
        let good = "xen-pv-probe: ring 0x0000000000000003\n\
            xen-pv-probe: start_info 0xffffffff80288000\n\
            (XEN) Hardware Dom0 halted: halting machine\n";
        assert_eq!(check(good), Ok(()));
        assert!(check(&good.replace("0x0000000000000003", "0x0000000000000000")).is_err());
        assert!(check(&good.replace("0xffffffff80288000", "0x0000000000000000")).is_err());
        assert!(check(&good.replace("Hardware Dom0 halted", "Panic")).is_err());
    }
}
