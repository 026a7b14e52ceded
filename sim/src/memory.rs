//! Guest memory: one region from guest-physical 0, registered with KVM.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Three pages KVM needs for the real-mode TSS on Intel, just below the
/// BIOS area at the top of 4 GiB (where QEMU puts it too).
pub const TSS_ADDRESS: usize = 0xfffb_d000;

/// Allocate `bytes` of guest RAM at guest-physical 0 and hand it to KVM.
pub fn create(vm: &VmFd, bytes: u64) -> Result<GuestMemoryMmap, String> {
    let memory = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), bytes as usize)])
        .map_err(|e| format!("allocating {bytes} bytes of guest memory: {e}"))?;
    for (slot, region) in memory.iter().enumerate() {
        let host = memory
            .get_host_address(region.start_addr())
            .map_err(|e| format!("guest memory: {e}"))?;
        let entry = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the mapping belongs to `memory`, which the caller keeps
        // alive for as long as the VM runs (it is dropped after the vCPU).
        unsafe { vm.set_user_memory_region(entry) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    }
    Ok(memory)
}
