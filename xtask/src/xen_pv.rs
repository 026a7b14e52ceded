//! The example kernel as the real Xen 4.17's 64-bit PV dom0 under QEMU
//! TCG (issue 18): the same ELF that boots through PVH enters through its
//! Xen PV notes (`example-kernel/src/xen_pv_entry.rs`) in ring 3, with a
//! `start_info` that carries the command line given here, chooses the
//! SDK's Xen PV backend by that entry, passes its PV checks through the
//! ops (`example-kernel/src/xen_pv_checks.rs`: Xen's clock, an entry
//! written through `mmu_update`, a second root pinned and switched to),
//! writes through
//! `console_io` (a dom0 has no console ring), and shuts down through the
//! `shutdown` op's `sched_op`, which Xen answers for a dom0 by halting the
//! machine ("Hardware Dom0 halted"; QEMU stays up, so the step stops it).

use crate::kernel_bench::KernelBench;
use crate::steps::{finish, Outcome, Step};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Xen, the kernel's entry and its self-tests need well under this
/// under TCG here.
const TIMEOUT: Duration = Duration::from_secs(60);
/// What Xen prints when its dom0 shuts down (it halts, and QEMU stays).
const DOM0_HALTED: &str = "Hardware Dom0 halted";
/// What Xen prints when its dom0 crashes.
const DOM0_CRASHED: &str = "Hardware Dom0 crashed";
/// The command line the kernel is given, and must report back.
const CMDLINE: &str = "selftest pvi-pv-check";
/// The same, then the hot ops' cost (`cargo xtask bench`).
const BENCH_CMDLINE: &str = "pvi-pv-check bench";
/// The same, with a fault the kernel does not expect after its checks.
const FAULT_CMDLINE: &str = "selftest pvi-pv-check pvi-pv-fault";
/// Xen's own command line for a PV dom0: no IOMMU and no SMAP, which a
/// Linux PV dom0 needed here too (book: "The real Xen").
fn xen_cmdline(vcpus: u32) -> String {
    format!(
        "console=com1 com1=115200,8n1 dom0_mem=256M dom0_max_vcpus={vcpus} \
         loglvl=all guest_loglvl=all noreboot iommu=0 smap=0"
    )
}

/// The step's name.
pub const NAME: &str =
    "xen pv dom0: the example kernel's ELF enters in ring 3 (real Xen 4.17, tcg)";
/// The same dom0 with two vCPUs.
const SMP_NAME: &str =
    "xen pv dom0, 2 vCPUs: the second started through VCPUOP_initialise and VCPUOP_up, set up through the ops (real Xen 4.17, tcg)";
/// The fault step's name.
const FAULT_NAME: &str =
    "xen pv dom0: an unexpected fault is reported by the kernel's handler, then a crash shutdown (real Xen 4.17, tcg)";

/// Build the example kernel and boot it as the PV dom0: the checks with
/// one vCPU, then with two, then with an unexpected fault; three steps.
/// The first's serial log when it passed, for the book's Verified where
/// table.
pub fn steps(steps: &mut Vec<Step>) -> Option<String> {
    let built = crate::xen::provision()
        .and_then(|xen| crate::qemu::build_kernel(false).map(|kernel| (xen.to_path_buf(), kernel)));
    let log = step(steps, NAME, &built, (CMDLINE, 1), "xen-pv-dom0", check);
    step(
        steps,
        SMP_NAME,
        &built,
        (CMDLINE, 2),
        "xen-pv-dom0-2vcpus",
        check_two_vcpus,
    );
    step(
        steps,
        FAULT_NAME,
        &built,
        (FAULT_CMDLINE, 1),
        "xen-pv-dom0-fault",
        check_fault,
    );
    log
}

/// One boot of `kernel` as the PV dom0 with its command line and vCPU
/// count, judged by `judge`; its serial log when it passed.
fn step(
    steps: &mut Vec<Step>,
    name: &'static str,
    built: &Result<(PathBuf, PathBuf), String>,
    (cmdline, vcpus): (&str, u32),
    log_name: &str,
    judge: fn(&str) -> Result<(), String>,
) -> Option<String> {
    println!("\n==> {name}");
    let start = Instant::now();
    let booted = built
        .clone()
        .and_then(|(xen, kernel)| boot(&xen, &kernel, cmdline, vcpus, log_name))
        .and_then(|log| judge(&log).map(|()| log));
    let (outcome, log) = match booted {
        Ok(log) => (Outcome::Passed, Some(log)),
        Err(why) => {
            println!("    {why}");
            (Outcome::Failed, None)
        }
    };
    finish(name, outcome, start, steps);
    log
}

/// Boot Xen with `kernel` as its dom0, given `cmdline`, until Xen halts
/// or reports a crash (or the timeout); the serial log, kept in
/// `target/boot/<log_name>.log`.
fn boot(
    xen: &Path,
    kernel: &Path,
    cmdline: &str,
    vcpus: u32,
    log_name: &str,
) -> Result<String, String> {
    boot_with(
        xen,
        kernel,
        cmdline,
        vcpus,
        &[],
        Path::new(&format!("target/boot/{log_name}.log")),
    )
}

/// [`boot`], with more QEMU options and the log at `log`.
fn boot_with(
    xen: &Path,
    kernel: &Path,
    cmdline: &str,
    vcpus: u32,
    vm_args: &[&str],
    log: &Path,
) -> Result<String, String> {
    let log = log.to_path_buf();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&log);
    // The first multiboot module is the dom0 kernel; Xen gives it the
    // module's string after the first word (the file name) as its command
    // line. QEMU reads a comma as the next module, hence none in either.
    // The host's time goes last, for the self-test of the wall clock.
    let host_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let module = format!("{} {cmdline} host_time={host_time}", kernel.display());
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1024M",
        ])
        .args(["-display", "none", "-no-reboot"])
        .args(vm_args)
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(xen)
        .args(["-append", &xen_cmdline(vcpus)])
        .args(["-initrd", &module])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let exited = qemu.try_wait().ok().flatten().is_some();
        let ended = text.contains(DOM0_HALTED) || text.contains(DOM0_CRASHED);
        if ended || exited || start.elapsed() > TIMEOUT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    for line in text
        .lines()
        .filter(|l| l.starts_with("pvi: Xen PV") || l.starts_with("backend: "))
    {
        println!("    {}", line.trim_end());
    }
    println!(
        "    ({:.1} s; log {})",
        start.elapsed().as_secs_f64(),
        log.display()
    );
    Ok(text)
}

/// The hot ops as Xen PV's inline forms at patched sites, and through the
/// run-time dispatch, in retired instructions per call: `kernel` (the
/// release build) booted as the real Xen's PV dom0 under TCG counting
/// instructions, with the `bench` word (`example-kernel/src/xen_pv_bench.rs`).
/// Its PV checks must pass too, or the counts are of a broken kernel.
pub fn bench_counting(kernel: &Path) -> Result<KernelBench, String> {
    let xen = crate::xen::provision()?;
    let log = Path::new("target/bench/kernel-xen-pv-tcg-icount.log");
    let text = boot_with(
        xen,
        kernel,
        BENCH_CMDLINE,
        1,
        crate::kernel_bench::ICOUNT,
        log,
    )?;
    let expected = [
        "pvi: Xen PV check patched_irq_sites: ok",
        "pvi: Xen PV entry: checks: 0 failed",
        DOM0_HALTED,
    ];
    all_present(&text, &expected, &log.display().to_string())?;
    let mut bench = crate::kernel_bench::parse("xen-pv-tcg-icount", &text);
    bench.backend = "xen_pv".to_string();
    if bench.ops.is_empty() {
        return Err(format!("no bench lines in {}", log.display()));
    }
    Ok(bench)
}

/// The kernel's self-test verdict as the PV dom0 with one vCPU: every
/// test run, none failed, and only these skipped: the four that need
/// another CPU, and `shutdown` and `panic_notify`, which would end the
/// run. The CMOS clock's two run, through Xen's I/O emulation
/// (`io_ports_enable`).
pub const SELFTEST_ONE_VCPU: &str = "27 passed, 0 failed, 6 skipped";
/// ... and with two: the other CPU's four run too (the IPI to both vCPUs
/// in one call among them: Xen PV's multicall).
pub const SELFTEST_TWO_VCPUS: &str = "31 passed, 0 failed, 2 skipped";
/// ... and as a PV domU with two, which Xen grants no port: the CMOS
/// clock's two are skipped, its ports reading 0xff.
pub const SELFTEST_DOMU_TWO_VCPUS: &str = "29 passed, 0 failed, 4 skipped";

/// Ring 3, Xen's `start_info` for its initial domain with the command
/// line given, the Xen PV backend chosen by the entry, every PV check
/// passed (faults taken through the trap table included), the report
/// through `console_io` (the console chain's step 2), the kernel's
/// self-tests after them (`selftest.rs`, the suite every entry runs),
/// and Xen's report that its dom0 shut down.
fn check(log: &str) -> Result<(), String> {
    check_with(
        log,
        (
            "pvi: Xen PV check smp_start: skipped (this domain has one vCPU",
            SELFTEST_ONE_VCPU,
        ),
        "target/boot/xen-pv-dom0.log",
    )
}

/// [`check`]'s lines, `smp` (the second vCPU's line) and `verdict` (the
/// self-tests' summary), in the log at `log_path`.
fn check_with(log: &str, (smp, verdict): (&str, &str), log_path: &str) -> Result<(), String> {
    let expected = [
        "pvi: Xen PV entry: ring 3 (CS 0xe033)".to_string(),
        "pvi: Xen PV entry: start_info \"xen-3.0-x86_64\": ".to_string(),
        "the initial domain (SIF_INITDOMAIN)".to_string(),
        format!("pvi: Xen PV entry: command line \"{CMDLINE} host_time="),
        "pvi: Xen PV entry: kernel text read-only".to_string(),
        "pvi: Xen PV entry: I/O ports: privilege level 1 through io_ports_enable (physdev_op)"
            .to_string(),
        "[xen_pv] ok: one host second = ".to_string(),
        "chosen: xen_pv (the kernel came in through its XEN_ELFNOTE_ENTRY entry)".to_string(),
        "backend: xen_pv".to_string(),
        "pvi: Xen PV check trap_table_load: ok".to_string(),
        "pvi: Xen PV check fault_address: ok".to_string(),
        "pvi: Xen PV check gdt_load: ok".to_string(),
        "pvi: Xen PV check gs_base_set: ok".to_string(),
        "pvi: Xen PV check event_masking: ok".to_string(),
        "pvi: Xen PV check patched_irq_sites: ok".to_string(),
        "pvi: Xen PV check clock_ns: ok".to_string(),
        "pvi: Xen PV check tsc_hz: ok".to_string(),
        "pvi: Xen PV check wallclock: ok".to_string(),
        "pvi: Xen PV check page_table_write: ok".to_string(),
        "pvi: Xen PV check address_space_switch: ok".to_string(),
        "pvi: Xen PV check pinned_table_write: ok".to_string(),
        "  console_write      step 2".to_string(),
        "pvi: Xen PV entry: checks: 0 failed; the kernel's self-tests follow".to_string(),
        "pvi: Xen PV check halt: ok".to_string(),
        "pvi: Xen PV check io_delay: ok".to_string(),
        smp.to_string(),
        "console_write: pvi-console-check".to_string(),
        "pvi: Xen PV check send_ipi: ok".to_string(),
        "pvi: Xen PV check flush_tlb: ok".to_string(),
        DOM0_HALTED.to_string(),
    ];
    all_present(log, &expected, log_path)?;
    // The summary is a line of its own (Xen's console ends each with
    // "\r\n"): "25 passed" must not match "125 passed".
    if !log.lines().any(|line| line.trim_end() == verdict) {
        return Err(format!(
            "no self-test verdict line {verdict:?} (log {log_path})"
        ));
    }
    Ok(())
}

/// The one-vCPU checks, and the second vCPU's: started, set up through
/// the ops on itself, its patched site masking its own events only.
fn check_two_vcpus(log: &str) -> Result<(), String> {
    let path = "target/boot/xen-pv-dom0-2vcpus.log";
    check_with(
        log,
        ("pvi: Xen PV check smp_start: ok", SELFTEST_TWO_VCPUS),
        path,
    )?;
    all_present(log, &["pvi: Xen PV check kick_cpu: ok"], path)
}

/// Ok when `log` holds every line of `expected`; else which are missing,
/// naming the log's file `log_path`.
fn all_present(log: &str, expected: &[impl AsRef<str>], log_path: &str) -> Result<(), String> {
    let missing: Vec<&str> = expected
        .iter()
        .map(AsRef::as_ref)
        .filter(|e| !log.contains(e))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {missing:?} (log {log_path})"))
    }
}

/// The checks passed, then the unexpected #UD: reported by the kernel's
/// own handler (so Xen entered it through the trap table), a panic, and
/// a crash shutdown that Xen reports, with no halt and no hang.
fn check_fault(log: &str) -> Result<(), String> {
    let expected = [
        "pvi: Xen PV entry: pvi-pv-fault: an unexpected #UD follows",
        "exception: invalid opcode (#UD) (vector 6)",
        "  rip ",
        "panic: panicked at ",
        "unhandled exception invalid opcode (#UD)",
        DOM0_CRASHED,
    ];
    all_present(log, &expected, "target/boot/xen-pv-dom0-fault.log")?;
    if log.contains(DOM0_HALTED) {
        return Err("the dom0 powered off instead of crashing".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_3_the_start_info_the_command_line_and_the_halt_are_all_needed() {
        let good = "pvi: Xen PV entry: ring 3 (CS 0xe033)\n\
            pvi: Xen PV entry: start_info \"xen-3.0-x86_64\": 65536 pages, shared_info at machine address 0x3fdb2000, 11 initial page-table frames, the initial domain (SIF_INITDOMAIN)\n\
            pvi: Xen PV entry: command line \"selftest pvi-pv-check host_time=1796606860\"\n\
            pvi: Xen PV entry: kernel text read-only\n\
            pvi: Xen PV entry: I/O ports: privilege level 1 through io_ports_enable (physdev_op)\n\
            test clock_ns vs CMOS RTC           [xen_pv] ok: one host second = 999973604 ns (26 ppm off) (1730 ms)\n\
            chosen: xen_pv (the kernel came in through its XEN_ELFNOTE_ENTRY entry)\n\
            backend: xen_pv\n\
            pvi: Xen PV check trap_table_load: ok (the kernel's 256 gates: Ok(()), served by step Some(1))\n\
            pvi: Xen PV check fault_address: ok (a read of 0x400000000000: #PF)\n\
            pvi: Xen PV check gdt_load: ok (two descriptors through set_gdt: Ok(()); ES loaded 0xb and reads 0xb; 0x13, past the table, faults (#GP))\n\
            pvi: Xen PV check gs_base_set: ok (gs:[0] read [1, 0])\n\
            pvi: Xen PV check event_masking: ok (held 0, then 1)\n\
            pvi: Xen PV check halt: ok (returned after 1 timer event(s))\n\
            pvi: Xen PV check io_delay: ok (served by Some((1, \"nop\")))\n\
            pvi: Xen PV check patched_irq_sites: ok (8 of 8 irq sites read as Xen PV's inline forms)\n\
            pvi: Xen PV check clock_ns: ok (served by step Some(1); 1038828555 ns, then 1038978685 ns)\n\
            pvi: Xen PV check tsc_hz: ok (2445431620 Hz, from vcpu_time_info)\n\
            pvi: Xen PV check wallclock: ok (1796606860 s since 1970)\n\
            pvi: Xen PV check page_table_write: ok ('A' at 0x146000, then 'B')\n\
            pvi: Xen PV check address_space_switch: ok (a second root)\n\
            pvi: Xen PV check pinned_table_write: ok (a write into the pinned root)\n\
            pvi: Xen PV check smp_start: skipped (this domain has one vCPU: VCPUOP_is_up(1) answered -ENOENT)\n\
            pvi: Xen PV check send_ipi: ok (a kick to vCPU 0: counted 1 time(s))\n\
            pvi: Xen PV check flush_tlb: ok (vCPUs 0b1: served by step 1)\n\
            served (the steps that answered each op's calls):\n\
            \x20 console_write      step 2\n\
            pvi: Xen PV entry: checks: 0 failed; the kernel's self-tests follow\n\
            console_write: pvi-console-check\n\
            27 passed, 0 failed, 6 skipped\n\
            (XEN) Hardware Dom0 halted: halting machine\n";
        assert_eq!(check(good), Ok(()));
        assert!(check(&good.replace("clock_ns: ok", "clock_ns: FAILED")).is_err());
        assert!(check(&good.replace("page_table_write: ok", "page_table_write: FAILED")).is_err());
        assert!(check(&good.replace("switch: ok", "switch: FAILED")).is_err());
        assert!(check(&good.replace("fault_address: ok", "fault_address: FAILED")).is_err());
        assert!(check(&good.replace("table_write: ok", "table_write: FAILED")).is_err());
        assert!(check(&good.replace("load: ok", "load: FAILED")).is_err());
        assert!(check(&good.replace("set: ok", "set: FAILED")).is_err());
        assert!(check(&good.replace("gdt_load: ok", "gdt_load: FAILED")).is_err());
        assert!(check(&good.replace("irq_sites: ok", "irq_sites: FAILED")).is_err());
        assert!(check(&good.replace("send_ipi: ok", "send_ipi: FAILED")).is_err());
        assert!(check(&good.replace("halt: ok", "halt: FAILED")).is_err());
        assert!(check(&good.replace("io_delay: ok", "io_delay: FAILED")).is_err());
        // Two vCPUs: the second must have run, not been skipped.
        assert!(check_two_vcpus(good).is_err());
        let two = good.replace(
            "smp_start: skipped (this domain has one vCPU: VCPUOP_is_up(1) answered -ENOENT)",
            "smp_start: ok (vCPU 1 through VCPUOP_initialise and VCPUOP_up)",
        ) + "pvi: Xen PV check kick_cpu: ok (counted 1)\n";
        // ... and the other CPU's self-tests run.
        assert!(check_two_vcpus(&two).is_err());
        let two = two.replace(SELFTEST_ONE_VCPU, SELFTEST_TWO_VCPUS);
        assert_eq!(check_two_vcpus(&two), Ok(()));
        assert!(check(&two).is_err());
        assert!(check(&good.replace("masking: ok", "masking: FAILED")).is_err());
        assert!(check(&good.replace("backend: xen_pv", "backend: native")).is_err());
        assert!(check(&good.replace("ring 3 (CS 0xe033)", "ring 0 (CS 0x8)")).is_err());
        assert!(check(&good.replace("(SIF_INITDOMAIN)", "a domU")).is_err());
        assert!(check(&good.replace("pvi-pv-check", "")).is_err());
        assert!(check(&good.replace(" 0 failed, 6", " 1 failed, 5")).is_err());
        assert!(check(&good.replace("27 passed, 0 failed, 6", "26 passed, 0 failed, 7")).is_err());
        // Without I/O privilege the CMOS tests would be skipped.
        assert!(check(&good.replace("privilege level 1", "no I/O privilege")).is_err());
        assert!(check(&good.replace("text read-only", "text left writable")).is_err());
        // Xen's console ends its lines with "\r\n"; a longer count is not
        // the verdict.
        assert_eq!(check(&good.replace('\n', "\r\n")), Ok(()));
        assert!(check(&good.replace("\n27 passed", "\n127 passed")).is_err());
        assert!(check(&good.replace("Hardware Dom0 halted", "Hardware Dom0 crashed")).is_err());
    }

    #[test]
    fn an_unexpected_fault_must_be_reported_then_crash_the_dom0() {
        let good = "pvi: Xen PV entry: pvi-pv-fault: an unexpected #UD follows\n\
            exception: invalid opcode (#UD) (vector 6), error code 0x0, CPU 0\n\
            \x20 rip 0x0000000000120765  cs 0xe033\n\
            panic: panicked at src/traps.rs:185:13:\n\
            unhandled exception invalid opcode (#UD)\n\
            (XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting.\n";
        assert_eq!(check_fault(good), Ok(()));
        assert!(check_fault(&good.replace("panic: ", "")).is_err());
        assert!(check_fault(&good.replace("unhandled", "expected")).is_err());
        assert!(check_fault(&good.replace("exception: ", "")).is_err());
        assert!(check_fault(&good.replace("crashed", "halted")).is_err());
    }
}
