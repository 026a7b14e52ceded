//! `wrmsr` of IA32_GS_BASE: the native end of `gs_base_set`.

use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};
use x86_64::registers::model_specific::GsBase;
use x86_64::VirtAddr;

/// Point this CPU's GS base at `base`; a non-canonical base (which
/// `wrmsr` would fault on) is the caller's error.
///
/// # Safety
///
/// The op's contract (`gs_base_set`); ring 0.
pub unsafe fn set(base: u64) -> Result<(), PvError> {
    let base = VirtAddr::try_new(base)
        .map_err(|_| PvError::new(ErrorKind::InvalidArgument, ErrorOrigin::Native))?;
    // GsBase::write is safe in the x86_64 crate, but what GS-relative
    // code then reads is the caller's contract.
    GsBase::write(base);
    Ok(())
}
