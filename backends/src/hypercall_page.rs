//! A hypercall page the hypervisor left empty. Calling into zeros would
//! run whatever they decode to (`add [rax], al`, over and over, then off
//! the end of the page). So before the first call a backend checks the
//! page, and if it holds nothing it fills it with stubs that return the
//! hypervisor's own "not implemented": every op then falls back, and the
//! fallback log says why.
//!
//! The pages themselves (Xen's and Hyper-V's, one each) live in a link
//! section of their own, `pvi_hypercall_pages`, page-aligned, so that a
//! kernel that maps nothing writable and executable at once can place
//! them apart from its data ([`pages`] lists them). The hypervisor
//! writes a page's code through its physical address; the guest writes
//! it only to fill a page the hypervisor left empty, and calls into it
//! right after, both inside `select`. So a W^X kernel maps these pages
//! writable and executable until `select` returns, then executable and
//! read-only.

/// The hypercall pages this build links, by address: 4 KiB each,
/// page-aligned, in section `pvi_hypercall_pages`.
pub fn pages() -> impl Iterator<Item = usize> {
    [
        #[cfg(feature = "xen")]
        crate::xen::hypercall_page(),
        #[cfg(feature = "hyperv")]
        crate::hyperv::hypercall_page(),
    ]
    .into_iter()
}

/// Whether the page holds nothing at all.
pub fn is_empty(page: &[u8; 4096]) -> bool {
    page.iter().all(|&b| b == 0)
}

/// Fill `page` with one stub every `stride` bytes (a divisor of 4096,
/// at least 8): `mov rax, status` (sign-extended imm32), `ret`.
pub fn fill_with_refusals(page: &mut [u8; 4096], stride: usize, status: i32) {
    let s = status.to_le_bytes();
    let stub = [0x48, 0xc7, 0xc0, s[0], s[1], s[2], s[3], 0xc3];
    for entry in page.chunks_mut(stride.clamp(stub.len(), 4096)) {
        entry[..stub.len()].copy_from_slice(&stub);
    }
}
