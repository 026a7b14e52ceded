// A timer the hypervisor refused to arm is not armed: the error must be
// handled.
#![deny(unused_must_use)]
use pvi_sdk::types::Nanos;
use pvi_sdk::PvOps;

fn arm<O: PvOps>(ops: &O) {
    ops.timer_oneshot(Nanos(1_000_000));
}

fn main() {}
