//! What the generated chains record as they run, lock-free so interrupt
//! handlers may record too: which steps fell back and why
//! ([`fallback`]), which were withdrawn for good ([`withdrawn`]), and
//! which answered calls ([`served`]). The generated `Steps` trait's
//! defaults write here, so a backend gets the fallback log, withdrawal of
//! steps its hypervisor refuses, and the boot report's `served` lines
//! without writing any of it.

pub mod fallback;
pub mod served;
pub mod withdrawn;
