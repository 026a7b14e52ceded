//! Hypercall fix-ups, as Linux's exception table: each hypercall stub
//! whose instruction may fault in the guest (a `vmcall` the host does not
//! handle, say) records in the `pvi_fixups` link section where the
//! instruction is and where to resume with "unsupported" in its result
//! register. A kernel's exception handler looks the faulting address up
//! with [`landing`] in [`table`] and resumes there, so the op falls back
//! instead of the kernel stopping.
//!
//! The section needs nothing from the kernel's link: the linker bounds it
//! with `__start_pvi_fixups` and `__stop_pvi_fixups` and keeps it under
//! `--gc-sections`, with or without a linker script. A script that names
//! its output sections keeps the name: `pvi_fixups : { KEEP(*(pvi_fixups)) }`.

crate::link_records::section_records! {
    /// Every fix-up record the kernel links: those of every hypercall stub
    /// it contains, whichever crate's.
    pub fn table() -> [Fixup] in "pvi_fixups"
        between __start_pvi_fixups and __stop_pvi_fixups
}

/// One recorded hypercall instruction (16 bytes, as the generated stubs
/// lay it out).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixup {
    /// The hypercall instruction's address.
    pub at: usize,
    /// Where to resume: the result register holds "unsupported", then
    /// the stub goes on after the instruction.
    pub landing: usize,
}

/// Where to resume after a fault at `rip`, if `rip` is a recorded
/// hypercall instruction.
pub fn landing(table: &[Fixup], rip: usize) -> Option<usize> {
    table.iter().find(|f| f.at == rip).map(|f| f.landing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_recorded_instruction_has_a_landing() {
        let table = [
            Fixup {
                at: 0x1000,
                landing: 0x9000,
            },
            Fixup {
                at: 0x2000,
                landing: 0x9010,
            },
        ];
        assert_eq!(landing(&table, 0x2000), Some(0x9010));
        assert_eq!(
            landing(&table, 0x2001),
            None,
            "inside, not at, an instruction"
        );
        assert_eq!(landing(&[], 0x1000), None);
    }
}
