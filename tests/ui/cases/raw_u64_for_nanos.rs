// A raw number where the interface wants nanoseconds: units are types.
use pvi_sdk::types::PvError;
use pvi_sdk::PvOps;

fn arm<O: PvOps>(ops: &O) -> Result<(), PvError> {
    ops.timer_oneshot(1_000_000u64)
}

fn main() {}
