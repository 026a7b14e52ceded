// A backend overrides an op with a signature the interface does not have:
// `now` returns `Nanos`, not a raw count.
use pvi_fixture_sdk::generated::ops::{NativeRoutines, PvOps};
use pvi_fixture_sdk::generated::types::{Level, Nanos};

struct Host;
impl NativeRoutines for Host {
    fn stop_native(_level: Level) {}
    fn now_native() -> Nanos {
        Nanos(0)
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
