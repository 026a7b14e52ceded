//! Misuse of the generated SDK is a compile error with a message a user can
//! act on. Each case in `cases/` sits beside the compiler output it must
//! produce (`.stderr`, reviewed); `TRYBUILD=overwrite` (or `cargo xtask
//! codegen --bless`) rewrites them.

#[test]
fn misuse_does_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("cases/*.rs");
}
