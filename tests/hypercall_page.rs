//! The guard against a hypercall page the hypervisor left empty.

use pvi_backends::hypercall_page::{fill_with_refusals, is_empty};

#[test]
fn an_empty_page_is_seen_and_a_filled_one_is_not() {
    let mut page = [0u8; 4096];
    assert!(is_empty(&page));
    page[4095] = 0xc3;
    assert!(!is_empty(&page));
}

#[test]
fn every_xen_entry_returns_minus_enosys() {
    let mut page = [0u8; 4096];
    fill_with_refusals(&mut page, 32, -38);
    for entry in page.chunks(32) {
        // mov rax, -38 (sign-extended imm32); ret
        assert_eq!(
            &entry[..8],
            &[0x48, 0xc7, 0xc0, 0xda, 0xff, 0xff, 0xff, 0xc3]
        );
    }
}

#[test]
fn a_single_entry_page_gets_one_stub() {
    let mut page = [0u8; 4096];
    fill_with_refusals(&mut page, 4096, 2);
    assert_eq!(&page[..8], &[0x48, 0xc7, 0xc0, 2, 0, 0, 0, 0xc3]);
    assert!(page[8..].iter().all(|&b| b == 0));
}

#[test]
fn a_stride_too_small_for_a_stub_is_widened() {
    let mut page = [0u8; 4096];
    fill_with_refusals(&mut page, 1, 7);
    assert_eq!(&page[8..16], &[0x48, 0xc7, 0xc0, 7, 0, 0, 0, 0xc3]);
}
