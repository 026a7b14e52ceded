//! The golden Rust of the fixture IDL, built as the `pvi-fixture-sdk` crate,
//! behaves as its IDL says. (`cargo xtask test` also builds it with every
//! interface feature, warnings denied.)

use pvi_fixture_sdk::generated::{alpha, types::*};

#[test]
fn fixture_types_have_their_declared_layout() {
    assert_eq!(core::mem::size_of::<packed_rec>(), 7);
    assert_eq!(core::mem::size_of::<gappy>(), 32);
    assert_eq!(core::mem::offset_of!(gappy, tail), 20);
    assert_eq!(Mode::B.bits(), 1 << 9);
    assert_eq!(Level::from_raw(2), Some(Level::High));
    assert_eq!(Level::from_raw(3), None);
    assert_eq!(pvi_fixture_sdk::generated::INTERFACE_VERSION, "1.2.0");
}

#[test]
fn fixture_constants_and_error_mapping() {
    assert_eq!(alpha::ALPHA_HC_KICK, 3);
    assert_eq!(alpha::ALPHA_MSR_CLOCK, 0x4b00_0001);
    assert_eq!(alpha::AlphaFeatures::ALPHA_F_KICK.bits(), 1 << 3);
    assert_eq!(alpha::error_kind(38), Some(ErrorKind::Unsupported));
    assert_eq!(alpha::error(7).kind, ErrorKind::Failed);
    assert_eq!(alpha::error(38).origin, ErrorOrigin::Alpha(38));
    // Gated constants are still in the tables, by value, for decoding.
    assert!(alpha::CONSTANTS.contains(&("ALPHA_MAGIC", 0xa1fa)));
}
