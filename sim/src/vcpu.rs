//! Running a vCPU: KVM_RUN until the guest asks to stop, answering its
//! port accesses; everything else KVM handles in the kernel.

use crate::devices::{Devices, Next};
use kvm_ioctls::{VcpuExit, VcpuFd};

/// The status when the guest triple-faults or the VMM cannot go on.
pub const EXIT_VMM_ERROR: u8 = 3;

/// Run `vcpu` until the guest stops; its exit status.
pub fn run(vcpu: &mut VcpuFd, devices: &mut Devices) -> Result<u8, String> {
    loop {
        let next = match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => devices.port_write(port, data),
            Ok(VcpuExit::IoIn(port, data)) => {
                devices.port_read(port, data);
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
        if let Next::Exit(code) = next {
            return Ok(code);
        }
    }
}
