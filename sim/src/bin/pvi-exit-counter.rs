//! pvi-exit-counter: counts the VM exits of a QEMU guest's boot vCPU by
//! kind and answers the example kernel's `exits` mailbox, as pvi-sim's
//! `--exit-mailbox` does for its own guests.
//!
//! QEMU must name its vCPU threads (`-name NAME,debug-threads=on`: the boot
//! vCPU's is `CPU 0/KVM`) and keep guest RAM in a shared file
//! (`-object memory-backend-file,…,share=on -machine memory-backend=…`),
//! whose offset N is guest-physical address N below the 32-bit PCI hole.
//! Runs until QEMU's process ends.

use clap::Parser;
use pvi_sim::exit_counting::{self, GuestWords, Tracepoints};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Count a QEMU guest's exits and answer its mailbox.
#[derive(Parser, Debug)]
#[command(name = "pvi-exit-counter", version)]
struct Args {
    /// QEMU's process id.
    #[arg(long, required_unless_present = "check")]
    qemu_pid: Option<u32>,
    /// The file that holds guest RAM.
    #[arg(long, required_unless_present = "check")]
    memory: Option<PathBuf>,
    /// The mailbox's guest-physical address (the guest's `exits.mailbox=`).
    #[arg(long, value_parser = pvi_sim::exit_counting::parse_address, required_unless_present = "check")]
    mailbox: Option<u64>,
    /// Only say whether exits can be counted on this machine.
    #[arg(long)]
    check: bool,
}

/// Guest RAM through its backing file.
struct RamFile(std::fs::File);

impl GuestWords for RamFile {
    fn read(&self, at: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.0.read_exact_at(&mut bytes, at).ok()?;
        Some(u64::from_le_bytes(bytes))
    }
    fn write(&self, at: u64, value: u64) {
        let _ = self.0.write_all_at(&value.to_le_bytes(), at);
    }
}

/// The thread id of QEMU's boot vCPU, waiting up to a minute for it.
fn boot_vcpu_thread(pid: u32) -> Result<i32, String> {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let entries = std::fs::read_dir(&tasks).map_err(|e| format!("{}: {e}", tasks.display()))?;
        for task in entries.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == "CPU 0/KVM" {
                if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
                    return Ok(tid);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "QEMU {pid} has no thread named \"CPU 0/KVM\" (run it with -name NAME,debug-threads=on and -accel kvm)"
    ))
}

fn run(args: &Args) -> Result<(), String> {
    if args.check {
        Tracepoints::open(0)?;
        println!("pvi-exit-counter: KVM's tracepoints can be counted here");
        return Ok(());
    }
    let (Some(pid), Some(memory), Some(mailbox)) = (args.qemu_pid, &args.memory, args.mailbox)
    else {
        return Err("--qemu-pid, --memory and --mailbox are needed".into());
    };
    // QEMU creates guest RAM before its vCPU threads.
    let tid = boot_vcpu_thread(pid)?;
    let ram = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(memory)
        .map_err(|e| format!("{}: {e}", memory.display()))?;
    let counters = Tracepoints::open(tid)?;
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let reading = || exit_counting::reading(counters.read(), 0, 0);
    exit_counting::serve(&RamFile(ram), mailbox, &reading, &|| !alive());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvi-exit-counter: {e}");
            ExitCode::FAILURE
        }
    }
}
