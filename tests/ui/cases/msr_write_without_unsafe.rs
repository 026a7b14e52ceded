// Writing an MSR is only sound for the MSRs and values the IDL maps, under
// their hypervisor: the Steps MSR accessors are unsafe, even through a
// backend that implements them.
use pvi_sdk::generated::hyperv::Steps;

fn poke<S: Steps>(steps: &S) {
    steps.write_msr(0x1b, 0);
}

fn main() {}
