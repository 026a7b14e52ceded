//! The `\_S5` sleep type the native power-off writes, read from DSDT bytes.

use pvi_backends::platform::Acpi;

/// `Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })`, as QEMU's q35
/// DSDT encodes it.
const QEMU_Q35: &[u8] = &[
    0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn qemu_q35_s5_is_zero() {
    let mut aml = vec![0x5b, 0x80, 0x01, 0x02]; // unrelated AML before it
    aml.extend_from_slice(QEMU_Q35);
    assert_eq!(Acpi::s5_sleep_type(&aml), Some(0));
}

#[test]
fn byte_prefix_and_root_prefix() {
    // Name (\_S5, Package { 7, 7, 0, 0 }) with BytePrefix constants.
    let aml = [
        0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x0a, 0x04, 0x0a, 0x07, 0x0a, 0x07, 0x00, 0x00,
    ];
    assert_eq!(Acpi::s5_sleep_type(&aml), Some(7));
}

#[test]
fn one_op() {
    let aml = [
        b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x01, 0x01, 0x00, 0x00,
    ];
    assert_eq!(Acpi::s5_sleep_type(&aml), Some(1));
}

#[test]
fn two_byte_package_length() {
    // Lead byte 0x41: one more length byte follows.
    let aml = [
        b'_', b'S', b'5', b'_', 0x12, 0x41, 0x00, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00,
    ];
    assert_eq!(Acpi::s5_sleep_type(&aml), Some(5));
}

#[test]
fn shapes_it_does_not_know_are_none() {
    assert_eq!(Acpi::s5_sleep_type(b""), None);
    assert_eq!(Acpi::s5_sleep_type(b"no sleep states here"), None);
    // A method, not a package.
    assert_eq!(
        Acpi::s5_sleep_type(&[b'_', b'S', b'5', b'_', 0x14, 0x05]),
        None
    );
    // A package whose first element is a name, not a constant.
    assert_eq!(
        Acpi::s5_sleep_type(&[b'_', b'S', b'5', b'_', 0x12, 0x08, 0x01, b'A', b'B', b'C', b'D']),
        None
    );
}

#[test]
fn every_truncation_is_none_or_right_never_a_panic() {
    for len in 0..=QEMU_Q35.len() {
        let got = Acpi::s5_sleep_type(&QEMU_Q35[..len]);
        assert!(got.is_none() || got == Some(0), "{len} bytes: {got:?}");
    }
    assert_eq!(Acpi::s5_sleep_type(&QEMU_Q35[..9]), Some(0));
    assert_eq!(Acpi::s5_sleep_type(&QEMU_Q35[..8]), None);
}
