//! Building the example kernel and booting it in QEMU.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// QEMU's exit status when the kernel reports success through
/// isa-debug-exit ((0x10 << 1) | 1).
pub const EXIT_SUCCESS: i32 = 33;
/// ... and failure ((0x11 << 1) | 1).
pub const EXIT_FAILURE: i32 = 35;
/// QEMU's own status when the guest powered off (ACPI S5).
pub const EXIT_POWERED_OFF: i32 = 0;
/// QEMU's status when the guest signalled a panic under
/// `-action panic=exit-failure`.
pub const EXIT_GUEST_PANICKED: i32 = 1;

/// The accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's emulator.
    Tcg,
    /// pvi-sim on /dev/kvm, presenting this hypervisor personality.
    Sim(&'static str),
    /// The real Xen (Debian's package) under QEMU TCG, the kernel its PVH
    /// dom0 with `smp` vCPUs.
    XenDom0,
    /// The real Xen under QEMU TCG with a Linux dom0 and Xen's toolstack,
    /// the kernel a PVH domU with `smp` vCPUs ([`crate::dom0`]); with
    /// `viridian`, Xen's Hyper-V emulation turned on for it.
    XenPvh {
        /// `HVM_PARAM_VIRIDIAN` set before the domU starts.
        viridian: bool,
    },
    /// As [`Accel::XenPvh`], the kernel a 64-bit PV domU entered through
    /// its Xen PV notes (`xen_pv_entry.rs`).
    XenPv,
}

impl Accel {
    /// The name QEMU and the user know.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Sim(_) => "pvi-sim",
            Accel::XenDom0 => "xen (dom0, tcg)",
            Accel::XenPvh { viridian: false } => "xen (pvh domU under a Linux dom0, tcg)",
            Accel::XenPvh { viridian: true } => {
                "xen (pvh domU with viridian under a Linux dom0, tcg)"
            }
            Accel::XenPv => "xen (pv domU under a Linux dom0, tcg)",
        }
    }

    /// For a domU under a Linux dom0: whether viridian is on, and whether
    /// the domU is PV; `None` for any other boot.
    pub fn under_linux_dom0(self) -> Option<(bool, bool)> {
        match self {
            Accel::XenPvh { viridian } => Some((viridian, false)),
            Accel::XenPv => Some((false, true)),
            _ => None,
        }
    }

    /// Whether it runs on /dev/kvm.
    pub fn needs_kvm(self) -> bool {
        !matches!(self, Accel::Tcg) && !self.is_xen()
    }

    /// Whether it is the real Xen.
    pub fn is_xen(self) -> bool {
        matches!(self, Accel::XenDom0 | Accel::XenPvh { .. } | Accel::XenPv)
    }
}

/// Whether /dev/kvm can be opened for reading and writing, and if not, why.
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// Make sure qemu-system-x86_64 is there: install it with apt-get when
/// running as root on Debian, else say what to install.
pub fn provision() -> Result<(), String> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = Path::new("/usr/bin/apt-get").exists();
    if !(root && apt) {
        return Err("qemu-system-x86_64 is missing: install QEMU (Debian/Ubuntu: `sudo apt-get install qemu-system-x86`)".into());
    }
    println!("xtask: installing QEMU (apt-get install qemu-system-x86)");
    let updated = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success());
    // Say what the install takes away before it does (Debian's QEMU can
    // replace a newer qemu-utils the machine had).
    let removals = apt_removals("qemu-system-x86");
    if !removals.is_empty() {
        println!(
            "xtask: installing qemu-system-x86 also removes: {} (apt-get -s install says so)",
            removals.join(", ")
        );
    }
    let ok = updated
        && Command::new("apt-get")
            .args(["install", "-y", "-qq", "qemu-system-x86"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("apt-get could not install qemu-system-x86".into())
    }
}

/// The packages `apt-get install package` would remove, from a simulated
/// run (`apt-get -s`: its `Remv NAME [VERSION]` lines).
fn apt_removals(package: &str) -> Vec<String> {
    let out = Command::new("apt-get")
        .args(["-s", "install", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    removals_in(&text)
}

/// `Remv` lines of `apt-get -s` output, as `name version`.
fn removals_in(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .map(|rest| rest.replace(['[', ']'], ""))
        .collect()
}

/// Build the example kernel; returns the ELF's path.
pub fn build_kernel(release: bool) -> Result<PathBuf, String> {
    let mut build = crate::cargo::kernel_cargo();
    build.args(["build", "--quiet"]);
    if release {
        build.arg("--release");
    }
    if !build.status().is_ok_and(|s| s.success()) {
        return Err("the example kernel did not build".into());
    }
    let profile = if release { "release" } else { "debug" };
    Ok(PathBuf::from(format!(
        "example-kernel/target/x86_64-unknown-none/{profile}/pvi-example-kernel"
    )))
}

/// One boot.
pub struct Boot<'a> {
    /// The kernel ELF.
    pub kernel: &'a Path,
    /// The accelerator.
    pub accel: Accel,
    /// CPUs.
    pub smp: u32,
    /// Extra `-cpu` properties (after `host` under KVM).
    pub cpu_extra: &'a str,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// More arguments for QEMU (e.g. `-action panic=exit-failure`) or
    /// pvi-sim (e.g. `--fault cpuid-garbage`).
    pub vm_args: &'a [&'a str],
}

/// Build pvi-sim; its path.
pub fn build_sim() -> Result<PathBuf, String> {
    crate::cargo::build_host_program("pvi-sim")
}

/// Where the guest's serial output goes.
enum Serial<'a> {
    Terminal,
    File(&'a Path),
}

impl Boot<'_> {
    fn command(&self, serial: Serial) -> Result<Command, String> {
        if let Accel::Sim(personality) = self.accel {
            let mut sim = Command::new("target/debug/pvi-sim");
            sim.args(["--personality", personality, "--memory-mib", "256"])
                .args(["--cpus", &self.smp.to_string()]);
            if let Serial::File(log) = serial {
                sim.arg("--serial").arg(log);
            }
            sim.args(self.vm_args);
            sim.arg(self.kernel)
                .arg("--")
                .args(self.cmdline.split_ascii_whitespace());
            return Ok(sim);
        }
        let mut qemu = Command::new("qemu-system-x86_64");
        let (accel, cpu, memory, device) = match self.accel {
            // Xen needs QEMU's emulated SVM (TCG), room for itself and its
            // dom0, and an IOMMU: it refuses a PVH hardware domain
            // without one. No pvpanic: Xen, not QEMU, sees a dom0 crash.
            Accel::XenDom0 => ("tcg", "max".to_string(), "1024M", "amd-iommu"),
            // A Linux PV dom0 runs without an IOMMU (`iommu=0`; with one it
            // crashed on an AMD-Vi page-table error) and needs more room.
            Accel::XenPvh { .. } | Accel::XenPv => ("tcg", "max".to_string(), "1536M", "pvpanic"),
            // QEMU 7.2 on nested KVM cannot set IA32_ARCH_CAPABILITIES
            // (MSR 0x10a) and aborts; the guest does not need it.
            Accel::Kvm => (
                "kvm",
                format!("host,-arch-capabilities{}", self.cpu_extra),
                "256M",
                "pvpanic",
            ),
            _ => ("tcg", format!("max{}", self.cpu_extra), "256M", "pvpanic"),
        };
        qemu.args([
            "-machine",
            "q35",
            "-accel",
            accel,
            "-cpu",
            &cpu,
            "-smp",
            &self.smp.to_string(),
            "-m",
            memory,
            "-display",
            "none",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-device",
            device,
        ]);
        qemu.args(self.vm_args);
        // Under Xen, `-kernel` is Xen and the modules are its dom0's kernel
        // with its command line, then the dom0's initramfs (QEMU splits
        // -initrd at commas: the command lines have none).
        let xen = || crate::xen::binary().ok_or("Xen is not provisioned");
        if self.accel == Accel::XenDom0 {
            let module = format!(
                "{} {}",
                self.kernel.display(),
                self.cmdline.replace(',', " ")
            );
            qemu.arg("-kernel")
                .arg(xen()?)
                .args(["-append", &crate::xen::dom0_command_line(self.smp)])
                .args(["-initrd", &module]);
        } else if let Some((viridian, pv)) = self.accel.under_linux_dom0() {
            let dom0 = crate::dom0::provision()?;
            let domu = crate::dom0::DomU {
                vcpus: self.smp,
                viridian,
                pv,
            };
            let initrd = crate::dom0::initrd(dom0, self.kernel, self.cmdline, domu)?;
            let modules = format!(
                "{} {},{}",
                dom0.vmlinuz.display(),
                crate::dom0::LINUX_COMMAND_LINE,
                initrd.display()
            );
            qemu.arg("-kernel")
                .arg(xen()?)
                .args(["-append", crate::dom0::xen_command_line()])
                .args(["-initrd", &modules]);
        } else {
            qemu.arg("-kernel")
                .arg(self.kernel)
                .args(["-append", self.cmdline]);
        }
        match serial {
            Serial::Terminal => qemu.args(["-serial", "stdio"]),
            Serial::File(log) => qemu.arg("-serial").arg(format!("file:{}", log.display())),
        };
        Ok(qemu)
    }

    /// Boot with the serial console on this terminal, showing only the
    /// guest's lines ([`crate::xen::GuestLines`]) unless `xen_log`; QEMU's
    /// exit status. With a `milestone`, QEMU is stopped when no line holds
    /// it in time, and the result is `Ok(None)`: the caller may boot again.
    pub fn interactive_guest_lines(
        &self,
        xen_log: bool,
        milestone: Option<&Milestone>,
    ) -> Result<Option<i32>, String> {
        use std::io::{BufRead, Write};
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::sync::{Arc, Mutex};
        let mut guest = crate::xen::GuestLines::new(self.accel);
        let mut child = self
            .command(Serial::Terminal)?
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.accel.name()))?;
        let out = child.stdout.take();
        let child = Arc::new(Mutex::new(child));
        let seen = Arc::new(AtomicBool::new(milestone.is_none()));
        let missed = Arc::new(AtomicBool::new(false));
        let watchdog = milestone.map(|m| {
            let (child, seen, missed, within) =
                (child.clone(), seen.clone(), missed.clone(), m.within);
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < within {
                    let exited = child
                        .lock()
                        .map_or(true, |mut c| c.try_wait().ok().flatten().is_some());
                    if seen.load(SeqCst) || exited {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                if !seen.load(SeqCst) {
                    missed.store(true, SeqCst);
                    if let Ok(mut c) = child.lock() {
                        let _ = c.kill();
                    }
                }
            })
        });
        if let Some(out) = out {
            let mut terminal = std::io::stdout();
            for line in std::io::BufReader::new(out)
                .split(b'\n')
                .map_while(Result::ok)
            {
                let text = String::from_utf8_lossy(&line);
                if milestone.is_some_and(|m| text.contains(m.line)) {
                    seen.store(true, SeqCst);
                }
                if guest.keep(&text) || xen_log {
                    let _ = writeln!(terminal, "{}", text.trim_end_matches('\r'));
                }
            }
        }
        seen.store(true, SeqCst);
        if let Some(w) = watchdog {
            let _ = w.join();
        }
        let status = child
            .lock()
            .map_err(|_| "QEMU's handle was poisoned".to_string())?
            .wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?;
        if missed.load(SeqCst) {
            return Ok(None);
        }
        Ok(Some(status.code().unwrap_or(-1)))
    }

    /// Boot with the serial console on this terminal; QEMU's exit status.
    pub fn interactive(&self) -> Result<i32, String> {
        let status = self
            .command(Serial::Terminal)?
            .status()
            .map_err(|e| format!("{}: {e}", self.accel.name()))?;
        Ok(status.code().unwrap_or(-1))
    }

    /// Boot with the serial console captured, killing QEMU after `timeout`;
    /// the exit status (None on timeout), the console output and the time
    /// from launch to exit.
    pub fn captured(
        &self,
        log: &Path,
        timeout: Duration,
    ) -> Result<(Option<i32>, String, Duration), String> {
        self.captured_beside(log, timeout, &|_| Ok(None))
    }

    /// [`Boot::captured`], with a helper process started beside the VMM
    /// (`helper` gets the VMM's process id) and ended with it.
    pub fn captured_beside(
        &self,
        log: &Path,
        timeout: Duration,
        helper: &dyn Fn(u32) -> Result<Option<std::process::Child>, String>,
    ) -> Result<(Option<i32>, String, Duration), String> {
        self.captured_until(log, timeout, helper, None)
            .map(|c| (c.code, c.output, c.elapsed))
    }

    /// [`Boot::captured`], ending the boot early when `milestone` has not
    /// shown in the console log within its time: a stage outside the
    /// kernel under test (a Linux dom0 that hung in its own start-up) that
    /// a caller may retry rather than wait out.
    pub fn captured_with_milestone(
        &self,
        log: &Path,
        timeout: Duration,
        milestone: &Milestone,
    ) -> Result<Captured, String> {
        self.captured_until(log, timeout, &|_| Ok(None), Some(milestone))
    }

    fn captured_until(
        &self,
        log: &Path,
        timeout: Duration,
        helper: &dyn Fn(u32) -> Result<Option<std::process::Child>, String>,
        milestone: Option<&Milestone>,
    ) -> Result<Captured, String> {
        let _ = std::fs::remove_file(log);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut qemu = self.command(Serial::File(log))?;
        qemu.stdout(Stdio::null()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = qemu
            .spawn()
            .map_err(|e| format!("{}: {e}", self.accel.name()))?;
        let mut beside = match helper(child.id()) {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut milestone_missed = false;
        let mut milestone_checked = Instant::now();
        // Read the log at most once a second, and only past the milestone's time.
        let missed = |checked: &mut Instant| {
            let Some(m) = milestone else { return false };
            if start.elapsed() <= m.within || checked.elapsed() < Duration::from_secs(1) {
                return false;
            }
            *checked = Instant::now();
            !std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(m.line)
        };
        let code = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if start.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) if missed(&mut milestone_checked) => {
                    milestone_missed = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for QEMU: {e}")),
            }
        };
        let elapsed = start.elapsed();
        if let Some(h) = beside.as_mut() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let mut output = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(mut err) = child.stderr.take() {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            if !text.trim().is_empty() {
                output.push_str(&format!("\n[{} stderr]\n", self.accel.name()));
                output.push_str(&text);
            }
        }
        Ok(Captured {
            code,
            output,
            elapsed,
            milestone_missed,
        })
    }
}

/// A console line a boot must reach within a time, or be ended early.
pub struct Milestone<'a> {
    /// The text the line contains.
    pub line: &'a str,
    /// How long after QEMU's start it may take.
    pub within: Duration,
}

/// A captured boot's outcome.
pub struct Captured {
    /// QEMU's exit status; None when it was killed.
    pub code: Option<i32>,
    /// The serial console's output, then QEMU's stderr.
    pub output: String,
    /// From launch to exit.
    pub elapsed: Duration,
    /// Whether the boot was ended because its milestone never showed.
    pub milestone_missed: bool,
}

#[cfg(test)]
mod tests {
    use super::removals_in;

    #[test]
    fn removals_are_read_from_the_simulation() {
        let sim = "Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18 Debian:12)\n\
                   Remv qemu-utils [1:8.2.2+ds-0ubuntu1]\n\
                   Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18 Debian:12)\n";
        assert_eq!(removals_in(sim), ["qemu-utils 1:8.2.2+ds-0ubuntu1"]);
        assert!(removals_in("Inst a (1)\n").is_empty());
    }
}
