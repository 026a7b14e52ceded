// A hypercall is only sound under its hypervisor: the stubs are unsafe.
use pvi_sdk::generated::kvm;
use pvi_sdk::types::ApicId;

fn main() {
    let calls = kvm::Hypercalls::new(kvm::Instruction::Vmcall);
    let _ = calls.kvm_hc_kick_cpu(0, ApicId(1));
}
