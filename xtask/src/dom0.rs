//! A Linux dom0 with Xen's toolstack, to start the example kernel as a Xen
//! *guest* (domU): Debian's kernel, `xen-utils-4.17` and its libraries,
//! and busybox, fetched with `apt-get download` (never installed) and
//! packed into an initramfs whose `/init` starts xenstored, xen-init-dom0
//! and xenconsoled, then `xl create -F` on the example kernel.
//!
//! The domU's console is its PV console ring, which xenconsoled logs to a
//! file; after the domU ends, `/init` prints that log between two marker
//! lines, then ends the machine: powered off when the domU powered itself
//! off (shutdown reason 0), else status 35 through QEMU's debug-exit port
//! (the PV dom0 may write it), as the kernel's own failure would.
//!
//! With `exits.markers` on the kernel's command line, the dom0 also counts
//! the domU's VM exits (a PV domU's entries into Xen): `xentrace` records
//! Xen's HVM (PV) trace while the domU runs, with the domU's vCPU 0 alone
//! on the last physical CPU, and
//! `pvi-xentrace-exits` turns the exits between the kernel's markers into
//! `exits key=…` lines (see the kernel's `exits.rs`).
//!
//! The flags that work under QEMU TCG (measured; the book says why): Xen
//! with `iommu=0 smap=0`, Linux as a PV dom0 (a PVH dom0 Linux
//! triple-faulted in 4 of 6 runs).

use crate::cpio::Archive;
use crate::xen::run;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the dom0's pieces are kept.
const DIR: &str = "target/xen/dom0";

/// The Debian packages the dom0 is made of, besides the kernel (found
/// through `linux-image-amd64`). libgcc-s1 because glibc's pthread_cancel
/// loads it at run time (`xl create -F` aborted without it).
const PACKAGES: &[&str] = &[
    "busybox-static",
    "xen-utils-4.17",
    "libxenmisc4.17",
    "libxenstore4",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxentoolcore1",
    "libxenhypfs1",
    "libyajl2",
    "libc6",
    "libgcc-s1",
    "liblzma5",
    "libuuid1",
    "zlib1g",
    "libzstd1",
    "libbz2-1.0",
    "liblzo2-2",
    "libncurses6",
    "libtinfo6",
];

/// The toolstack's programs the init script runs.
const PROGRAMS: &[&str] = &[
    "xl",
    "xenstored",
    "xenconsoled",
    "xen-init-dom0",
    "xentrace",
];
/// Where Debian puts them.
const PROGRAM_DIR: &str = "usr/lib/xen-4.17/bin";
/// Libraries loaded with dlopen, which no ELF lists as needed.
const LOADED_AT_RUN_TIME: &[&str] = &["libgcc_s.so.1"];
/// The kernel modules the toolstack needs, in load order (xenfs needs
/// xen-privcmd), under the kernel's `drivers/xen/`.
const MODULES: &[&str] = &[
    "xen-evtchn.ko",
    "xen-privcmd.ko",
    "xen-gntdev.ko",
    "xen-gntalloc.ko",
    "xenfs/xenfs.ko",
];

/// The first line the dom0 prints of the guest's console log, and the
/// line after its last.
pub const LOG_BEGINS: &str = "pvi-dom0: the domU's console log begins";
/// See [`LOG_BEGINS`].
pub const LOG_ENDS: &str = "pvi-dom0: the domU's console log ends";

/// The dom0's `/init`: busybox sh.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/lib/xen-4.17/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
for m in xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xenfs; do insmod /lib/modules/$m.ko; done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file /run/xenstored.pid
# xen-init-dom0 writes dom0's entries (its CPU pool among them) into
# xenstore; once in a few boots under TCG it failed, and every xl create
# after it with 'Illegal pool specified'. Try it again, and say so.
tries=1
until xen-init-dom0; do
    echo "pvi-dom0: xen-init-dom0 failed (try $tries)"
    tries=$((tries + 1)); [ $tries -gt 5 ] && break; sleep 1
done
xenconsoled --log=guest --log-dir=/var/log/xen/console
echo "pvi-dom0: toolstack up; starting the domU (/pvi/start.sh)"
# A domU that neither ends nor crashes (a failed run whose backend has no
# way to report a crash halts for good) must not keep QEMU up forever, and
# neither may `xl create` that hangs before the domU runs (seen twice in
# about 20 runs under TCG: the domain built, then nothing). The longest
# domU run here takes about 15 s; 90 s leaves room for the attempts below
# within the boot's limit (`cargo xtask test` gives it 360 s).
run_domu() {
    timeout -s KILL 90 sh /pvi/start.sh > /tmp/xl.out 2>&1
    # 137: busybox's timeout killed it (128 + SIGKILL).
    if [ $? = 137 ]; then
        echo "pvi-dom0: the domU did not end within 90 s; destroying it" >> /tmp/xl.out
        xl destroy pvi 2>/dev/null
    fi
    cat /tmp/xl.out
    reason=$(sed -n 's/.*has shut down, reason code \([0-9]*\).*/\1/p' /tmp/xl.out)
}
run_domu
# Once in many boots under TCG the toolstack failed before the domU ran a
# single instruction (no shutdown reason, no console log): xl crashed (a
# segmentation fault), timed out waiting for xenconsoled's console tty
# (twice in a row), or hung after building the domain. That says nothing of the guest: restart xenconsoled and
# start the domU again, at most twice, and say so. A guest that wrote to
# Xen's debug port (`console.e9`) ran though its console log is empty:
# its lines are in Xen's own (`(dN) …`).
for attempt in 2 3; do
    if [ -n "$reason" ] || [ -s /var/log/xen/console/guest-pvi.log ] \
        || xl dmesg | grep -q '^(d[0-9]*) '; then
        break
    fi
    echo "pvi-dom0: the toolstack failed before the domU ran; restarting xenconsoled, attempt $attempt"
    xl destroy pvi 2>/dev/null
    killall xenconsoled 2>/dev/null
    sleep 1
    xenconsoled --log=guest --log-dir=/var/log/xen/console
    run_domu
done
echo "pvi-dom0: the domU shut down with reason code ${reason:-none}"
echo "pvi-dom0: the domU's console log begins"
cat /var/log/xen/console/guest-pvi.log
echo "pvi-dom0: the domU's console log ends"
if [ "$reason" != 0 ]; then
    printf '\021' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
fi
poweroff -f
"#;

/// The dom0's kernel and the cached part of its initramfs.
pub struct Dom0 {
    /// Debian's kernel.
    pub vmlinuz: PathBuf,
    /// The gzipped cpio archive of the toolstack and `/init`.
    base: PathBuf,
}

static DOM0: OnceLock<Dom0> = OnceLock::new();

/// `package=version` for each package apt would fetch.
fn pinned(packages: &[String]) -> Result<Vec<String>, String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(packages)
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut pins = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Package: ") {
            name = Some(n.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Version: ") {
            if let Some(n) = name.take() {
                pins.push(format!("{n}={}", v.trim()));
            }
        }
    }
    if pins.len() != packages.len() {
        return Err(format!(
            "apt knows {} of the dom0's {} packages (run apt-get update?)",
            pins.len(),
            packages.len()
        ));
    }
    Ok(pins)
}

/// The kernel package `linux-image-amd64` stands for.
fn kernel_package() -> Result<String, String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", "linux-image-amd64"])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .and_then(|d| d.split([' ', ',']).find(|p| p.starts_with("linux-image-")))
        .map(str::to_string)
        .ok_or_else(|| "apt has no linux-image-amd64".to_string())
}

/// Make sure the dom0 is built: fetched, unpacked and packed when the
/// package versions differ from the last build's.
pub fn provision() -> Result<&'static Dom0, String> {
    if let Some(d) = DOM0.get() {
        return Ok(d);
    }
    let dir = PathBuf::from(DIR);
    let mut packages: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    packages.push(kernel_package()?);
    let pins = pinned(&packages)?.join("\n") + "\n";
    // What the cached archive is made of: the packages, and what this file
    // takes from them (a change to either rebuilds it).
    let recipe = format!("{pins}{PROGRAMS:?}\n{MODULES:?}\n{LOADED_AT_RUN_TIME:?}\n{INIT}");
    let stamp = dir.join("recipe.txt");
    let base = dir.join("base.cpio.gz");
    let root = dir.join("root");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(recipe.as_str()) || !base.exists() {
        println!("xtask: building the Linux dom0 with Xen's toolstack from {} Debian packages (apt-get download; not installed) in {DIR}", packages.len());
        let _ = std::fs::remove_dir_all(&dir);
        let debs = dir.join("debs");
        std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
        run(
            "apt-get download",
            Command::new("apt-get")
                .args(["download", "-qq"])
                .args(pins.lines())
                .current_dir(&debs),
        )?;
        for deb in std::fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))? {
            let deb = deb.map_err(|e| e.to_string())?.path();
            run(
                "dpkg-deb -x",
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
            )?;
        }
        let archive = base_archive(&root)?;
        gzip(&archive, &base)?;
        std::fs::write(&stamp, &recipe).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    let vmlinuz = std::fs::read_dir(root.join("boot"))
        .map_err(|e| format!("{}/boot: {e}", root.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package has no vmlinuz")?;
    Ok(DOM0.get_or_init(|| Dom0 { vmlinuz, base }))
}

fn gzip(data: &[u8], to: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-1", "-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("gzip: no stdin")?;
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().map_err(|e| format!("gzip: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err("gzip failed".into());
    }
    std::fs::write(to, out.stdout).map_err(|e| format!("{}: {e}", to.display()))
}

/// Where an unpacked library is, by its soname.
fn find_library(root: &Path, name: &str) -> Option<PathBuf> {
    ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.exists())
}

/// The sonames an ELF file lists as needed.
fn needed(bytes: &[u8]) -> Result<Vec<String>, String> {
    use object::read::elf::{Dyn, ElfFile64, FileHeader};
    let elf = ElfFile64::<object::Endianness>::parse(bytes).map_err(|e| e.to_string())?;
    let endian = elf.endian();
    let header = elf.elf_header();
    let sections = header.sections(endian, bytes).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Some((entries, link)) = sections.dynamic(endian, bytes).map_err(|e| e.to_string())? {
        let strings = sections
            .strings(endian, bytes, link)
            .map_err(|e| e.to_string())?;
        for entry in entries {
            if entry.tag32(endian) == Some(object::elf::DT_NEEDED) {
                let name = entry.string(endian, strings).map_err(|e| e.to_string())?;
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(names)
}

/// Every library the programs need, transitively (sonames).
fn libraries(root: &Path) -> Result<BTreeSet<String>, String> {
    let mut wanted: Vec<String> = LOADED_AT_RUN_TIME.iter().map(|s| s.to_string()).collect();
    for program in PROGRAMS {
        let path = root.join(PROGRAM_DIR).join(program);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        wanted.extend(needed(&bytes)?);
    }
    let mut found = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        if !found.insert(name.clone()) {
            continue;
        }
        let path = find_library(root, &name)
            .ok_or_else(|| format!("no package of the dom0 has {name}"))?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        wanted.extend(needed(&bytes)?);
    }
    Ok(found)
}

/// The cached part of the initramfs: busybox, the toolstack, its
/// libraries, the modules and `/init`.
fn base_archive(root: &Path) -> Result<Vec<u8>, String> {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let mut a = Archive::new();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc",
        "etc/xen",
        "lib",
        "lib/x86_64-linux-gnu",
        "lib/modules",
        "lib64",
        "usr",
        "usr/lib",
        "usr/lib/xen-4.17",
        "usr/lib/xen-4.17/bin",
        "var",
        "var/lib",
        "var/lib/xen",
        "var/lib/xenstored",
        "var/log",
        "var/log/xen",
        "var/log/xen/console",
        "var/run",
        "var/run/xen",
        "pvi",
    ] {
        a.dir(d);
    }
    a.file("init", INIT.as_bytes(), true);
    a.file("etc/xen/xl.conf", b"", false);
    a.file("bin/busybox", &read(root.join("bin/busybox"))?, true);
    for program in PROGRAMS {
        let path = format!("{PROGRAM_DIR}/{program}");
        a.file(&path, &read(root.join(&path))?, true);
    }
    for library in libraries(root)? {
        let path = find_library(root, &library).ok_or(format!("no {library}"))?;
        a.file(
            &format!("lib/x86_64-linux-gnu/{library}"),
            &read(path)?,
            true,
        );
    }
    a.symlink(
        "lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    );
    let modules = std::fs::read_dir(root.join("lib/modules"))
        .map_err(|e| format!("{}/lib/modules: {e}", root.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .ok_or("the kernel package has no modules")?;
    for module in MODULES {
        let name = module.rsplit('/').next().unwrap_or(module);
        let path = modules.join("kernel/drivers/xen").join(module);
        a.file(&format!("lib/modules/{name}"), &read(path)?, false);
    }
    Ok(a.finish())
}

/// Start the domU and wait for its end (`xl create -F` prints its
/// shutdown reason).
const START: &str = "exec xl create -F /pvi/domu.cfg\n";

/// The same, with Xen's Hyper-V emulation on: created paused, then
/// `HVM_PARAM_VIRIDIAN` (9) set before its first instruction. The mask,
/// from Xen's hvm/params.h: base_freq (bit 0), time_ref_count (2),
/// reference_tsc (3), hcall_remote_tlb_flush (4), apic_assist (5),
/// crash_ctl (6), synic (7), stimer (8), hcall_ipi (9).
const START_VIRIDIAN: &str = r#"xl create -p -F /pvi/domu.cfg &
xl_pid=$!
n=0
until domid=$(xl domid pvi 2>/dev/null); do
    n=$((n + 1)); [ $n -gt 60 ] && break; sleep 1
done
if /pvi/xen-hvm-param "$domid" 9 0x3fd; then
    xl unpause pvi
else
    echo "pvi-dom0: could not turn viridian on"; xl destroy pvi
fi
wait $xl_pid
"#;

/// Around the domU's start when its exits are counted: the dom0's own
/// vCPUs kept off the measured CPU (a PV guest, its entries would land in
/// the PV trace), then Xen's trace class for the domU's kind (`@MASK@`:
/// `TRC_HVM`, 0x0008f000, or `TRC_PV`, 0x0020f000) recorded by `xentrace`
/// from before the domU is built until after it ends (1,024 pages of
/// buffer per CPU, so that a TCG-slow `xentrace` loses nothing; a loss
/// voids the calls it touches), then the exits between the markers of the
/// guest's lines (its console log, and Xen's for `console.e9`) on the
/// measured CPU.
const TRACE_EXITS: &str = r#"@PIN_DOM0@xentrace -D -S 1024 -e @MASK@ /tmp/pvi.trace &
trace_pid=$!
sleep 1
sh /pvi/run.sh
kill -INT $trace_pid
wait $trace_pid
(cat /var/log/xen/console/guest-pvi.log; xl dmesg) | /pvi/pvi-xentrace-exits /tmp/pvi.trace @CPU@
"#;

/// How the domU is built.
#[derive(Clone, Copy, Debug)]
pub struct DomU {
    /// Its vCPUs.
    pub vcpus: u32,
    /// Xen's Hyper-V emulation turned on for it (a PVH guest only).
    pub viridian: bool,
    /// A 64-bit PV guest (the kernel's Xen PV entry), not PVH.
    pub pv: bool,
}

/// Whether the dom0 counts the domU's exits: the kernel brackets its
/// calls with markers (`exits.markers`).
fn traces_exits(cmdline: &str) -> bool {
    cmdline
        .split_ascii_whitespace()
        .any(|w| w == "exits.markers")
}

/// Xen's trace classes that record the domU's exits: `TRC_HVM` for a PVH
/// guest's VM exits, `TRC_PV` for a PV guest's entries.
fn trace_mask(domu: DomU) -> &'static str {
    if domu.pv {
        "0x0020f000"
    } else {
        "0x0008f000"
    }
}

/// The physical CPUs below the measured one, where the domU's other vCPUs
/// and the dom0's run (`0` on a machine of one).
fn other_cpus(domu: DomU) -> String {
    match measured_cpu(domu) {
        0 => "0".to_string(),
        last => format!("0-{}", last - 1),
    }
}

/// The physical CPU the measured vCPU (0) runs on alone when exits are
/// counted: the last of the machine's, which has as many as the domU has
/// vCPUs.
fn measured_cpu(domu: DomU) -> u32 {
    domu.vcpus.max(1) - 1
}

/// The domU's `xl` configuration: the example kernel as a PVH guest, or
/// as a PV one. When its exits are counted, vCPU 0 is pinned to
/// [`measured_cpu`] and the others to the CPUs below it, so that the HVM
/// records of that CPU are vCPU 0's alone; and its TSC mode is `native`:
/// `rdtsc` runs in the guest, as Xen's default mode has it on a host whose
/// CPU announces an invariant TSC. QEMU's TCG CPU cannot announce one, so
/// the default would emulate every `rdtsc` here (an exit, or a PV guest's
/// trap), and a count would be of this host's TSC, not of the op.
fn domu_config(cmdline: &str, domu: DomU) -> String {
    let (kind, vcpus) = (if domu.pv { "pv" } else { "pvh" }, domu.vcpus);
    let mut config = format!(
        "name = \"pvi\"\ntype = \"{kind}\"\nkernel = \"/pvi/kernel\"\ncmdline = \"{}\"\nmemory = 64\nvcpus = {vcpus}\non_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"destroy\"\n",
        cmdline.replace('"', "")
    );
    if traces_exits(cmdline) {
        let last = measured_cpu(domu);
        let others = other_cpus(domu);
        let pins: Vec<String> = (0..vcpus)
            .map(|v| {
                format!(
                    "\"{}\"",
                    if v == 0 {
                        last.to_string()
                    } else {
                        others.clone()
                    }
                )
            })
            .collect();
        config.push_str(&format!("cpus = [{}]\n", pins.join(", ")));
        config.push_str("tsc_mode = \"native\"\n");
    }
    config
}

/// The initramfs for one boot: the cached base, then the example kernel
/// and its domU configuration (Linux unpacks both archives).
pub fn initrd(dom0: &Dom0, kernel: &Path, cmdline: &str, domu: DomU) -> Result<PathBuf, String> {
    let mut a = Archive::new();
    let start = if domu.viridian {
        let tool = hvm_param_tool()?;
        a.file(
            "pvi/xen-hvm-param",
            &std::fs::read(&tool).map_err(|e| format!("{}: {e}", tool.display()))?,
            true,
        );
        START_VIRIDIAN
    } else {
        START
    };
    if traces_exits(cmdline) {
        let tool = crate::cargo::build_host_program("pvi-xentrace-exits")?;
        a.file(
            "pvi/pvi-xentrace-exits",
            &std::fs::read(&tool).map_err(|e| format!("{}: {e}", tool.display()))?,
            true,
        );
        a.file("pvi/run.sh", start.as_bytes(), true);
        let pin = match measured_cpu(domu) {
            0 => String::new(),
            _ => format!("xl vcpu-pin Domain-0 all {}\n", other_cpus(domu)),
        };
        let wrapper = TRACE_EXITS
            .replace("@PIN_DOM0@", &pin)
            .replace("@MASK@", trace_mask(domu))
            .replace("@CPU@", &measured_cpu(domu).to_string());
        a.file("pvi/start.sh", wrapper.as_bytes(), true);
    } else {
        a.file("pvi/start.sh", start.as_bytes(), true);
    }
    a.file(
        "pvi/kernel",
        &std::fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?,
        false,
    );
    a.file("pvi/domu.cfg", domu_config(cmdline, domu).as_bytes(), false);
    let part = PathBuf::from(DIR).join("boot.cpio.gz");
    gzip(&a.finish(), &part)?;
    let mut joined =
        std::fs::read(&dom0.base).map_err(|e| format!("{}: {e}", dom0.base.display()))?;
    joined.extend(std::fs::read(&part).map_err(|e| format!("{}: {e}", part.display()))?);
    let out = PathBuf::from(DIR).join("boot-initrd.gz");
    std::fs::write(&out, joined).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// `pvi-xen-hvm-param` (tests/xen-hvm-param), built for this host, which
/// is also the dom0's architecture and C library.
fn hvm_param_tool() -> Result<PathBuf, String> {
    crate::cargo::build_host_program("pvi-xen-hvm-param")
}

/// Xen's command line under a Linux PV dom0 (see the module doc).
pub fn xen_command_line() -> &'static str {
    "console=com1 com1=115200,8n1 dom0_mem=512M dom0_max_vcpus=2 loglvl=all guest_loglvl=all noreboot iommu=0 smap=0"
}

/// The dom0 kernel's command line: its console on Xen's, quiet.
pub const LINUX_COMMAND_LINE: &str = "console=hvc0 quiet";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domu_is_a_pvh_or_pv_guest_with_the_words_and_vcpus_asked_for() {
        let domu = DomU {
            vcpus: 2,
            viridian: false,
            pv: false,
        };
        let cfg = domu_config("selftest host_time=5", domu);
        assert!(cfg.contains("type = \"pvh\""));
        assert!(cfg.contains("cmdline = \"selftest host_time=5\""));
        assert!(cfg.contains("vcpus = 2"));
        let cfg = domu_config("selftest", DomU { pv: true, ..domu });
        assert!(cfg.contains("type = \"pv\""));
        assert!(
            !cfg.contains("cpus = ["),
            "pinned only when exits are counted"
        );
        assert!(
            !cfg.contains("tsc_mode"),
            "Xen's default TSC mode otherwise"
        );
    }

    #[test]
    fn a_counted_domu_has_vcpu_0_alone_on_the_last_cpu() {
        let domu = DomU {
            vcpus: 4,
            viridian: false,
            pv: false,
        };
        let cfg = domu_config("exits exits.markers", domu);
        assert!(
            cfg.contains("cpus = [\"3\", \"0-2\", \"0-2\", \"0-2\"]\n"),
            "{cfg}"
        );
        let one = domu_config("exits exits.markers", DomU { vcpus: 1, ..domu });
        assert!(one.contains("cpus = [\"0\"]\n"), "{one}");
        assert_eq!(measured_cpu(domu), 3);
        assert!(cfg.contains("tsc_mode = \"native\"\n"), "{cfg}");
        assert_eq!(other_cpus(domu), "0-2");
        assert_eq!(trace_mask(domu), "0x0008f000");
        assert_eq!(trace_mask(DomU { pv: true, ..domu }), "0x0020f000");
    }

    #[test]
    fn init_reports_the_shutdown_reason_between_markers() {
        assert!(INIT.contains(LOG_BEGINS));
        assert!(INIT.contains(LOG_ENDS));
        assert!(INIT.contains("has shut down, reason code"));
    }
}
