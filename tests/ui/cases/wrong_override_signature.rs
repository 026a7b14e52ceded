// A backend overrides an op with a signature the interface does not have:
// `now` returns `Nanos`, not a raw count.
use pvi_fixture_sdk::generated::ops::{ArmNativeUses, NativeRoutines, PvOps};
use pvi_fixture_sdk::generated::types::{Level, Nanos, PvError};

struct Host;
impl NativeRoutines for Host {
    fn stop_native(_level: Level) {}
    fn put_native(_data: &[u8]) {}
    unsafe fn poke_native(_address: u64, _value: u64) {}
    fn now_native() -> Nanos {
        Nanos(0)
    }
    // Routines of ops newer than the guest's version are still the
    // backend's to provide: it serves every version.
    fn arm_native<P: PvOps + ?Sized>(
        uses: ArmNativeUses<'_, P>,
        _deadline: Nanos,
    ) -> Result<(), PvError> {
        // The op set's clock, which the IDL's `uses now` lets it read.
        let _now = uses.now();
        Ok(())
    }
}

struct Backend;
impl PvOps for Backend {
    type Native = Host;
    fn now(&self) -> u64 {
        0
    }
}

fn main() {}
