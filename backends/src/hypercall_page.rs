//! A hypercall page the hypervisor left empty. Calling into zeros would
//! run whatever they decode to (`add [rax], al`, over and over, then off
//! the end of the page). So before the first call a backend checks the
//! page, and if it holds nothing it fills it with stubs that return the
//! hypervisor's own "not implemented": every op then falls back, and the
//! fallback log says why.

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
