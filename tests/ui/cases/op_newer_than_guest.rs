// The guest was built for interface 1.0; `arm` arrived in 1.1. Calling it
// needs the `interface-1-1` feature of the SDK.
use pvi_fixture_sdk::generated::ops::PvOps;
use pvi_fixture_sdk::generated::types::Nanos;

fn arm<O: PvOps>(ops: &O) {
    let _ = ops.arm(Nanos(1));
}

fn main() {}
