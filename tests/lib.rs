//! Host-side integration tests of the pvi toolchain. The tests are the
//! `[[test]]` targets of this package; this library holds what they share.
