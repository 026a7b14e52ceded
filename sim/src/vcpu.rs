//! Running a vCPU: KVM_RUN until the guest asks to stop, answering its
//! port accesses; everything else KVM handles in the kernel.

use crate::devices::{Devices, Next};
use crate::personality::hyperv::{self, Hyperv, Written};
use crate::personality::xen::{self, Xen};
use crate::personality::{vmware, Caller, Personality, HYPERCALL_PORT};
use crate::trace;
use kvm_ioctls::{VcpuExit, VcpuFd};
use pvi_sdk::generated::hyperv::{HV_STATUS_SUCCESS, HV_STATUS_TIME_OUT};
use pvi_sdk::generated::vmware::BDOOR_PORT;
use pvi_sdk::generated::xen::XEN_EBUSY;
use std::sync::Mutex;

/// What the run loop needs to know about the machine.
pub struct Guest<'a> {
    /// The hypervisor the guest sees.
    pub personality: Personality,
    /// The vCPUs' TSC frequency.
    pub tsc_khz: u32,
    /// The misbehaviour asked for, if any.
    pub fault: Option<crate::fault::Fault>,
    /// Log each exchange (`--trace`).
    pub trace: bool,
    /// Guest memory, for the pages a hypervisor fills.
    pub memory: &'a vm_memory::GuestMemoryMmap,
    /// The VM, for interrupts a hypervisor raises.
    pub vm: &'a kvm_ioctls::VmFd,
    /// The Hyper-V partition state, under that personality.
    pub hyperv: Option<Hyperv>,
    /// The Xen domain state, under that personality.
    pub xen: Option<Xen>,
    /// Requests to other vCPUs' threads (remote TLB flushes).
    pub kicks: crate::kick::Kicks,
}

/// The status when the guest triple-faults or the VMM cannot go on.
pub const EXIT_VMM_ERROR: u8 = 3;

/// Run `vcpu` (index and APIC id `id`) until the guest stops; its exit
/// status. The vCPUs share the devices.
pub fn run(
    id: u32,
    vcpu: &mut VcpuFd,
    guest: &Guest,
    shared_devices: &Mutex<Devices>,
) -> Result<u8, String> {
    let devices = || {
        shared_devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    guest.kicks.enter(id, vcpu);
    loop {
        let mut apic_msr = None;
        let exit = vcpu.run();
        if let Ok(exit) = &exit {
            crate::exit_counters::saw(id, exit, guest.personality);
        }
        let next = match exit {
            // The VMware backdoor reads and writes registers beyond the
            // port data: answered below, once the exit's borrow ends.
            Ok(VcpuExit::IoIn(BDOOR_PORT, data))
                if guest.personality == Personality::Vmware && data.len() == 4 =>
            {
                answer_backdoor(id, vcpu, guest)?;
                Next::Continue
            }
            Ok(VcpuExit::IoOut(HYPERCALL_PORT, _)) if guest.hyperv.is_some() => {
                answer_hypercall(id, vcpu, guest)?;
                Next::Continue
            }
            Ok(VcpuExit::IoOut(HYPERCALL_PORT, _)) if guest.xen.is_some() => {
                answer_xen_hypercall(id, vcpu, guest, shared_devices)?
            }
            // The Hyper-V APIC MSRs: forwarded below, once the exit's borrow
            // ends.
            Ok(VcpuExit::X86Rdmsr(exit))
                if guest.hyperv.is_some() && hyperv::x2apic_msr(exit.index).is_some() =>
            {
                apic_msr = Some((exit.index, None));
                Next::Continue
            }
            Ok(VcpuExit::X86Wrmsr(exit))
                if guest.hyperv.is_some() && hyperv::x2apic_msr(exit.index).is_some() =>
            {
                apic_msr = Some((exit.index, Some(exit.data)));
                Next::Continue
            }
            Ok(VcpuExit::X86Rdmsr(exit)) => {
                let value = guest
                    .hyperv
                    .as_ref()
                    .and_then(|hv| hv.read_msr(id, exit.index));
                match value {
                    Some(value) => *exit.data = value,
                    None => *exit.error = 1,
                }
                let name = trace::msr_name(guest.personality, exit.index);
                let index = exit.index;
                trace::line(
                    guest.trace,
                    id,
                    format_args!(
                        "rdmsr {name} ({index:#x}) -> {}",
                        value.map_or("#GP".to_string(), |v| format!("{v:#x}"))
                    ),
                );
                Next::Continue
            }
            Ok(VcpuExit::X86Wrmsr(exit)) => {
                let (index, data) = (exit.index, exit.data);
                let written = match (&guest.xen, &guest.hyperv) {
                    (Some(x), _) if index == xen::HYPERCALL_MSR => x
                        .fill_hypercall_page(guest.memory, data)
                        .map(|()| Written::Done),
                    (_, Some(hv)) => hv.write_msr(guest.memory, id, index, data),
                    _ => Err(()),
                };
                let name = trace::msr_name(guest.personality, index);
                trace::line(
                    guest.trace,
                    id,
                    format_args!("wrmsr {name} ({index:#x}) <- {data:#x}: {written:?}"),
                );
                match written {
                    Ok(Written::Done) => Next::Continue,
                    Ok(Written::Crashed(p)) => {
                        eprintln!("pvi-sim: the guest reported a crash (HV_X64_MSR_CRASH_CTL; P0-P4 {p:x?})");
                        Next::Exit(1)
                    }
                    Err(()) => {
                        *exit.error = 1;
                        Next::Continue
                    }
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => devices().port_write(port, data),
            Ok(VcpuExit::IoIn(port, data)) => {
                devices().port_read(port, data);
                Next::Continue
            }
            Ok(VcpuExit::MmioRead(address, data)) => {
                data.fill(0xff);
                eprintln!("pvi-sim: MMIO read at {address:#x}, where nothing is");
                Next::Continue
            }
            Ok(VcpuExit::MmioWrite(address, data)) => {
                eprintln!("pvi-sim: MMIO write of {data:02x?} at {address:#x}, where nothing is");
                Next::Continue
            }
            Ok(VcpuExit::Hlt) => {
                eprintln!("pvi-sim: the vCPU halted with nothing to wake it");
                Next::Exit(EXIT_VMM_ERROR)
            }
            Ok(VcpuExit::Shutdown) => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                eprintln!("pvi-sim: the guest triple-faulted (last rip {rip:#x})");
                Next::Exit(EXIT_VMM_ERROR)
            }
            Ok(VcpuExit::Intr) => Next::Continue,
            Ok(other) => return Err(format!("unexpected vCPU exit: {other:?}")),
            // A signal interrupted KVM_RUN, or KVM asks to run again.
            Err(e)
                if matches!(
                    std::io::Error::from_raw_os_error(e.errno()).kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Next::Continue
            }
            Err(e) => return Err(format!("KVM_RUN: {e}")),
        };
        if let Some((msr, write)) = apic_msr {
            forward_apic_msr(id, vcpu, guest, msr, write);
        }
        guest.kicks.serve(id, vcpu)?;
        if let Next::Exit(code) = next {
            return Ok(code);
        }
    }
}

/// Carry out a Hyper-V APIC MSR access on the in-kernel local APIC's
/// x2APIC MSR (host-initiated, so the filter does not apply), and complete
/// the exit with its value or #GP (the APIC is not in x2APIC mode).
fn forward_apic_msr(id: u32, vcpu: &mut VcpuFd, guest: &Guest, msr: u32, write: Option<u64>) {
    let Some(x2apic) = hyperv::x2apic_msr(msr) else {
        return;
    };
    let entry = kvm_bindings::kvm_msr_entry {
        index: x2apic,
        data: write.unwrap_or(0),
        ..Default::default()
    };
    let result = kvm_bindings::Msrs::from_entries(&[entry])
        .ok()
        .and_then(|mut msrs| {
            let done = match write {
                Some(_) => vcpu.set_msrs(&msrs),
                None => vcpu.get_msrs(&mut msrs),
            };
            (done.ok() == Some(1)).then(|| msrs.as_slice()[0].data)
        });
    // EOIs come with every interrupt: traced like the rest, but only then.
    let name = trace::msr_name(guest.personality, msr);
    trace::line(
        guest.trace,
        id,
        format_args!(
            "{} {name} ({msr:#x}) via x2APIC MSR {x2apic:#x}: {}",
            if write.is_some() { "wrmsr" } else { "rdmsr" },
            match (write, result) {
                (Some(v), Some(_)) => format!("<- {v:#x}"),
                (None, Some(v)) => format!("-> {v:#x}"),
                (_, None) => "#GP (the local APIC is not in x2APIC mode)".into(),
            }
        ),
    );
    let run = vcpu.get_kvm_run();
    // The exit was KVM_EXIT_X86_RDMSR or _WRMSR, so `msr` is the active
    // member of the exit union; KVM reads it on the next KVM_RUN.
    match result {
        Some(v) => {
            run.__bindgen_anon_1.msr.error = 0;
            if write.is_none() {
                run.__bindgen_anon_1.msr.data = v;
            }
        }
        None => run.__bindgen_anon_1.msr.error = 1,
    }
}

/// Answer a backdoor `in eax, dx`: the registers are set here, as QEMU's
/// vmport does, and KVM completes the `in` on the next KVM_RUN (moving rip
/// past the instruction).
fn answer_backdoor(id: u32, vcpu: &mut VcpuFd, guest: &Guest) -> Result<(), String> {
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    let command = regs.rcx & 0xffff;
    let eax = if guest.fault == Some(crate::fault::Fault::BackdoorFfffffff) {
        u32::MAX
    } else {
        vmware::backdoor(&mut regs, guest.tsc_khz)
    };
    // eax goes both into rax and into the port data: which of the two KVM
    // keeps when it completes the `in` differs between its fast path and
    // its emulator (a 32-bit `in` zero-extends into rax).
    regs.rax = u64::from(eax);
    let name = trace::hypercall_name(guest.personality, command);
    trace::line(
        guest.trace,
        id,
        format_args!("backdoor {name} ({command}) -> eax {eax:#x}"),
    );
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let run = vcpu.get_kvm_run();
    // SAFETY: the exit was KVM_EXIT_IO, so `io` is the active member of
    // the exit union.
    let io = unsafe { run.__bindgen_anon_1.io };
    if io.size != 4 || io.count != 1 {
        return Err(format!(
            "a backdoor access of {} x {} bytes",
            io.count, io.size
        ));
    }
    let data = (run as *mut kvm_bindings::kvm_run)
        .cast::<u8>()
        .wrapping_add(io.data_offset as usize);
    // SAFETY: KVM put the 4-byte data buffer at `data_offset` inside the
    // kvm_run mapping, which it sized for it; nothing else holds it now.
    unsafe { data.cast::<u32>().write_unaligned(eax) };
    Ok(())
}

/// Answer a Hyper-V hypercall made through the page: the control word and
/// GPAs in rcx, rdx and r8; the result in rax. KVM then finishes the `out`.
fn answer_hypercall(id: u32, vcpu: &mut VcpuFd, guest: &Guest) -> Result<(), String> {
    let Some(hv) = guest.hyperv.as_ref() else {
        return Ok(());
    };
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rax = match hv.hypercall(guest.memory, regs.rcx, regs.rdx, regs.r8, guest.vm) {
        hyperv::Hypercall::Status(status) => status,
        hyperv::Hypercall::Flush(targets) => match guest.kicks.flush(id, vcpu, targets) {
            Ok(()) => HV_STATUS_SUCCESS.into(),
            Err(e) => {
                eprintln!("pvi-sim: HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE: {e}");
                HV_STATUS_TIME_OUT as u64
            }
        },
    };
    let name = trace::hypercall_name(guest.personality, regs.rcx & 0xffff);
    trace::line(
        guest.trace,
        id,
        format_args!(
            "hypercall {name} (control {:#x}, {:#x}, {:#x}) -> {:#x}",
            regs.rcx, regs.rdx, regs.r8, regs.rax
        ),
    );
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))
}

/// Answer a Xen hypercall made through the page: the number in eax, the
/// arguments in rdi, rsi, rdx, r10, r8; the result in rax.
fn answer_xen_hypercall(
    id: u32,
    vcpu: &mut VcpuFd,
    guest: &Guest,
    devices: &Mutex<Devices>,
) -> Result<Next, String> {
    let Some(x) = guest.xen.as_ref() else {
        return Ok(Next::Continue);
    };
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8];
    let translate = |gva: u64| {
        vcpu.translate_gva(gva)
            .ok()
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address)
    };
    let caller = Caller {
        vcpu: id,
        memory: guest.memory,
        translate: &translate,
    };
    let (rax, next) = match x.hypercall(&caller, regs.rax & 0xffff_ffff, args) {
        xen::Outcome::Return(v) => (v, Next::Continue),
        xen::Outcome::Console(bytes) => {
            devices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .console_write(&bytes);
            (0, Next::Continue)
        }
        // Halted in KVM, the vCPU wakes when an interrupt can be taken, as
        // Xen's vcpu_block() does (and, like it, not for one held off by
        // RFLAGS.IF = 0).
        xen::Outcome::Block => {
            let halted = kvm_bindings::kvm_mp_state {
                mp_state: kvm_bindings::KVM_MP_STATE_HALTED,
            };
            match vcpu.set_mp_state(halted) {
                Ok(()) => (0, Next::Continue),
                Err(e) => return Err(format!("KVM_SET_MP_STATE: {e}")),
            }
        }
        xen::Outcome::FlushAll => match guest.kicks.flush(id, vcpu, u64::MAX) {
            Ok(()) => (0, Next::Continue),
            Err(e) => {
                eprintln!("pvi-sim: HVMOP_flush_tlbs: {e}");
                (-XEN_EBUSY, Next::Continue)
            }
        },
        xen::Outcome::HaltMachine => {
            eprintln!("pvi-sim: the hardware domain asked to power off: halting the machine, as Xen does (\"Hardware Dom0 halted: halting machine\"); it stays on");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        xen::Outcome::Shutdown(reason) => {
            eprintln!("pvi-sim: the guest shut down (SCHEDOP_shutdown, reason {reason})");
            (0, Next::Exit(xen::shutdown_status(reason)))
        }
    };
    let name = trace::hypercall_name(guest.personality, regs.rax & 0xffff_ffff);
    trace::line(
        guest.trace,
        id,
        format_args!("hypercall {name} {args:x?} -> {rax}"),
    );
    regs.rax = rax as u64;
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    Ok(next)
}

/// The vCPU's TSC now (IA32_TSC), or 0 if KVM will not say.
pub fn guest_tsc(vcpu: &VcpuFd) -> u64 {
    const IA32_TSC: u32 = 0x10;
    let Ok(mut msrs) = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index: IA32_TSC,
        ..Default::default()
    }]) else {
        return 0;
    };
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) => msrs.as_slice()[0].data,
        _ => 0,
    }
}
