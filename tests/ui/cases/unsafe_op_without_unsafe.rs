// An op the IDL declares `unsafe "contract"` is an `unsafe fn`: calling it
// outside an `unsafe` block, where no one has vouched for the contract,
// does not compile.
use pvi_fixture_sdk::generated::ops::PvOps;

fn write_through<P: PvOps>(ops: &P, address: u64) {
    ops.poke(address, 0);
}

fn main() {}
