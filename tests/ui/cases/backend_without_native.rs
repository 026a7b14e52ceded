// Every backend names the native routines behind the ops it leaves alone.
use pvi_sdk::PvOps;

struct Backend;
impl PvOps for Backend {}

fn main() {}
