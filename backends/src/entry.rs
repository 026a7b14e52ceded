//! What a hypervisor hands a kernel at an entry point of its own (Xen's PV
//! entry: start_info and the hypercall page it filled), kept for the
//! backend that detection by that entry builds. Always built, so that a
//! kernel's entry compiles whichever backends the build has; without the
//! backend, `select` serves the kernel natively and says so.

/// start_info's and the hypercall page's addresses, from Xen's PV entry.
static XEN_PV: spin::Once<(usize, usize)> = spin::Once::new();

/// Tell the backends what Xen handed the kernel at its PV entry; the first
/// call counts. The Xen PV backend reads it when it is built.
///
/// # Safety
///
/// `start_info` is the start_info Xen passed the entry (in rsi), mapped and
/// left unchanged for the program's life, and `hypercall_page` the page
/// the kernel's `XEN_ELFNOTE_HYPERCALL_PAGE` note names (Xen filled it
/// before the entry ran), mapped executable for the program's life.
pub unsafe fn xen_pv(start_info: *const pvi_sdk::types::start_info, hypercall_page: *const u8) {
    XEN_PV.call_once(|| (start_info as usize, hypercall_page as usize));
}

/// What [`xen_pv`] was given, if it was called.
#[cfg_attr(not(feature = "xen_pv"), allow(dead_code))]
pub(crate) fn xen_pv_handed() -> Option<(usize, usize)> {
    XEN_PV.get().copied()
}

/// Not a Xen PV kernel, or a build without the Xen PV backend.
fn not_xen_pv() -> pvi_sdk::types::PvError {
    pvi_sdk::types::PvError::new(
        pvi_sdk::types::ErrorKind::Unsupported,
        pvi_sdk::types::ErrorOrigin::Native,
    )
}

/// Whether vCPU `cpu` of this Xen PV domain runs; an error when the domain
/// has no such vCPU (Xen's -ENOENT), or `backend` is not Xen PV's.
pub fn xen_pv_vcpu_is_up(
    backend: &crate::registry::Backend,
    cpu: u32,
) -> Result<bool, pvi_sdk::types::PvError> {
    #[cfg(feature = "xen_pv")]
    if let crate::registry::Backend::XenPv(pv) = backend {
        return pv.0.vcpu_is_up(cpu);
    }
    let _ = (backend, cpu);
    Err(not_xen_pv())
}
