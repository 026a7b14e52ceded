// The guest was built for interface 1.0; ALPHA_MAGIC arrived in 1.1.
use pvi_fixture_sdk::generated::alpha;

fn main() {
    let _magic = alpha::ALPHA_MAGIC;
}
