// A frequency where a deadline is expected: two units, two types.
use pvi_sdk::types::PvError;
use pvi_sdk::PvOps;

fn arm<O: PvOps>(ops: &O) -> Result<(), PvError> {
    ops.timer_oneshot(ops.tsc_hz())
}

fn main() {}
