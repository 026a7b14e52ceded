//! pvi-sim: a small VMM on /dev/kvm that boots a PVH guest (the example
//! kernel, or yours) against the ABI of a chosen hypervisor personality, so
//! every pvi backend can boot for real on one Linux machine.
//!
//! Exit status, as QEMU's: `(v << 1) | 1` for a write of `v` to the debug
//! exit port 0xf4, 1 when the guest signals a panic (pvpanic, port 0x505),
//! 0 when it powers off, 3 when it triple-faults or the VMM gives up.

mod acpi;
mod boot;
mod cpuid;
mod devices;
mod exit_counters;
mod fault;
mod kick;
mod memory;
mod personality;
mod timers;
mod trace;
mod vcpu;

use clap::Parser;
use personality::Personality;
use std::path::PathBuf;
use std::process::ExitCode;

/// Boot a PVH kernel on /dev/kvm as if under a given hypervisor.
#[derive(Parser, Debug)]
#[command(name = "pvi-sim", version)]
struct Args {
    /// The hypervisor the guest sees.
    #[arg(long, value_enum, default_value_t = Personality::None)]
    personality: Personality,
    /// Virtual CPUs (APIC ids 0..N, listed in the ACPI MADT).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    cpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// Where the guest's serial output goes (default: standard output).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Log every MSR, hypercall and backdoor exchange (decoded with the
    /// IDL's names) and port accesses no device answers, on standard error.
    #[arg(long)]
    trace: bool,
    /// Misbehave on purpose, as a broken or hostile hypervisor would.
    #[arg(long, value_enum)]
    fault: Option<fault::Fault>,
    /// Answer the guest's requests for its exit counts through the mailbox
    /// at this guest-physical address (the example kernel's `exits` word,
    /// `exits.mailbox=`).
    #[arg(long, value_parser = pvi_sim::exit_counting::parse_address)]
    exit_mailbox: Option<u64>,
    /// The kernel: an ELF with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY).
    kernel: PathBuf,
    /// The kernel command line, one word per argument (after `--`).
    #[arg(last = true)]
    words: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pvi-sim: {e}");
            ExitCode::from(vcpu::EXIT_VMM_ERROR)
        }
    }
}

fn run(args: &Args) -> Result<u8, String> {
    args.personality.available()?;
    if let Some(f) = args.fault {
        f.check(args.personality)?;
    }
    let kvm = kvm_ioctls::Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = kvm
        .create_vm()
        .map_err(|e| format!("creating the VM: {e}"))?;
    let ram = args
        .memory_mib
        .checked_mul(1 << 20)
        .filter(|&b| (16 << 20..=3 << 30).contains(&b))
        .ok_or("--memory-mib must be between 16 and 3072")?;
    let memory = memory::create(&vm, ram)?;
    vm.set_tss_address(memory::TSS_ADDRESS)
        .map_err(|e| format!("KVM_SET_TSS_ADDR: {e}"))?;
    vm.create_irq_chip()
        .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
    // KVM_PIT_SPEAKER_DUMMY: KVM also answers port 0x61 (the speaker gate
    // and PIT channel 2's output), which TSC calibration against the PIT
    // reads.
    let pit = kvm_bindings::kvm_pit_config {
        flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    let legacy_devices = args.fault != Some(fault::Fault::NoLegacyDevices);
    if legacy_devices {
        vm.create_pit2(pit)
            .map_err(|e| format!("KVM_CREATE_PIT2: {e}"))?;
    }
    let cmdline = args.words.join(" ");
    // The real Xen 4.17's hardware domain gets a version-0 start info and
    // an XSDT whose header Xen copied from address 0.
    let hardware_domain = args.fault == Some(fault::Fault::HardwareDomain);
    let hardware_reduced = args.fault == Some(fault::Fault::HardwareReducedAcpi);
    let rsdp = acpi::write(
        &memory,
        args.cpus,
        acpi::Quirks {
            xsdt_header_from_address_0: hardware_domain,
            no_legacy_devices: !legacy_devices,
            hardware_reduced,
        },
    )?;
    let version = if hardware_domain {
        boot::StartInfo::V0
    } else {
        boot::StartInfo::V1
    };
    let loaded = boot::load(&memory, &args.kernel, &cmdline, ram, rsdp, version)?;
    let devices = std::sync::Mutex::new(devices::Devices::new(
        args.serial.as_deref(),
        args.trace,
        legacy_devices,
        hardware_reduced,
    )?);
    let mut vcpus = Vec::new();
    let mut tsc_khz = 0;
    for id in 0..args.cpus {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(|e| format!("creating vCPU {id}: {e}"))?;
        tsc_khz = vcpu
            .get_tsc_khz()
            .map_err(|e| format!("KVM_GET_TSC_KHZ: {e}"))?;
        let cpuid = cpuid::for_personality(
            &kvm,
            args.personality,
            u32::from(id),
            tsc_khz,
            u32::from(args.cpus),
            args.fault,
        )?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
        vcpus.push(vcpu);
    }
    // The boot vCPU starts at the PVH entry; the others wait in KVM for
    // the guest's INIT and STARTUP IPIs.
    boot::set_entry_state(&vcpus[0], &loaded)?;
    // The hypervisor clocks count from here: the boot vCPU's TSC now.
    let tsc_at_start = vcpu::guest_tsc(&vcpus[0]);
    let hyperv = (args.personality == Personality::Hyperv).then(|| {
        personality::hyperv::Hyperv::new(u32::from(args.cpus), tsc_khz, tsc_at_start, args.fault)
    });
    let xen = (args.personality == Personality::Xen).then(|| {
        let mut xen =
            personality::xen::Xen::new(tsc_khz, u32::from(args.cpus), tsc_at_start, args.fault);
        xen.console_ring_at(boot::console_page(ram));
        xen.set_memory_map(loaded.memory_map.clone());
        xen
    });
    if hyperv.is_some() || xen.is_some() {
        trap_synthetic_msrs(&vm)?;
    }
    let guest = vcpu::Guest {
        personality: args.personality,
        tsc_khz,
        fault: args.fault,
        trace: args.trace,
        memory: &memory,
        vm: &vm,
        hyperv,
        xen,
        kicks: kick::Kicks::new(u32::from(args.cpus))?,
    };
    if let Some(at) = args.exit_mailbox.filter(|&at| at % 8 != 0 || at + 80 > ram) {
        return Err(format!(
            "--exit-mailbox {at:#x} must be 8-byte aligned and within the guest's {} MiB",
            args.memory_mib
        ));
    }
    // The first vCPU to stop the machine ends the process; the others are
    // still inside KVM_RUN and go with it.
    std::thread::scope(|scope| {
        let guest = &guest;
        if let Some(x) = &guest.xen {
            scope.spawn(move || x.timers().run(|vcpu| x.fire(vcpu, guest.memory, guest.vm)));
        }
        if let Some(at) = args.exit_mailbox {
            scope.spawn(move || exit_counters::serve(guest.memory, at));
        }
        if let Some(hv) = &guest.hyperv {
            scope.spawn(move || hv.timers().run(|vp| hv.fire(vp, guest.vm)));
        }
        for (id, mut vcpu) in vcpus.into_iter().enumerate() {
            let devices = &devices;
            let counting = id == 0 && args.exit_mailbox.is_some();
            scope.spawn(move || {
                if counting {
                    exit_counters::start_on_boot_vcpu();
                }
                let code = match vcpu::run(id as u32, &mut vcpu, guest, devices) {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("pvi-sim: vCPU {id}: {e}");
                        vcpu::EXIT_VMM_ERROR
                    }
                };
                std::process::exit(i32::from(code));
            });
        }
    });
    Err("every vCPU thread ended without an exit status".into())
}

/// Have KVM hand the synthetic MSRs (0x4000_0000 on) to pvi-sim: a
/// filter that denies them, with denials reported as exits.
fn trap_synthetic_msrs(vm: &kvm_ioctls::VmFd) -> Result<(), String> {
    use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags};
    use personality::hyperv::{MSR_BASE, MSR_COUNT};
    let cap = kvm_bindings::kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
        args: [u64::from(kvm_bindings::KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(|e| format!("KVM_CAP_X86_USER_SPACE_MSR: {e}"))?;
    // A clear bit denies the access, which then exits to user space.
    let bitmap = vec![0u8; (MSR_COUNT / 8) as usize];
    let range = MsrFilterRange {
        flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
        base: MSR_BASE,
        msr_count: MSR_COUNT,
        bitmap: &bitmap,
    };
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &[range])
        .map_err(|e| format!("KVM_X86_SET_MSR_FILTER: {e}"))
}
