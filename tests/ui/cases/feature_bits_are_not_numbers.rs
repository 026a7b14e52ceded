// Feature bits are a flags type, not the upstream bit number or a mask.
use pvi_sdk::generated::kvm;

fn main() {
    let _mask: u32 = kvm::KvmFeatures::KVM_FEATURE_CLOCKSOURCE2;
}
