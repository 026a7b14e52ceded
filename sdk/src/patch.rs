//! Patchable call sites for hot ops, as Linux's alternatives: a site is
//! emitted as a 5-byte `call` to an out-of-line copy of the op and records
//! itself in the `.pvi_sites` link section; once the backend is known, a
//! kernel rewrites each site in place to the op's native instruction padded
//! with a NOP, so the hot path carries no call at all.
//!
//! The kernel's linker script must keep the section between
//! `__pvi_sites_start` and `__pvi_sites_end`, and its text must be writable
//! while [`apply`] runs.

/// One recorded call site (16 bytes, as the macros lay it out).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// The address of the site's first byte.
    pub at: usize,
    /// Which op ([`HotOp`] as a byte).
    pub op: u8,
    /// The site's length in bytes.
    pub len: u8,
    _pad: [u8; 6],
}

/// The ops a site may be emitted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HotOp {
    /// `irq_disable`: `cli`.
    IrqDisable = 0,
    /// `irq_enable`: `sti`.
    IrqEnable = 1,
}

impl HotOp {
    fn from_byte(b: u8) -> Option<HotOp> {
        match b {
            0 => Some(HotOp::IrqDisable),
            1 => Some(HotOp::IrqEnable),
            _ => None,
        }
    }

    /// The op's name in the IDL.
    pub fn name(self) -> &'static str {
        match self {
            HotOp::IrqDisable => "irq_disable",
            HotOp::IrqEnable => "irq_enable",
        }
    }

    /// The native instruction, padded to a 5-byte site with a 4-byte NOP
    /// (`0f 1f 40 00`, nopl 0(%rax)).
    pub fn native_bytes(self) -> [u8; 5] {
        let first = match self {
            HotOp::IrqDisable => 0xfa,
            HotOp::IrqEnable => 0xfb,
        };
        [first, 0x0f, 0x1f, 0x40, 0x00]
    }
}

/// The out-of-line `irq_disable` an unpatched site calls.
pub extern "C" fn irq_disable_out_of_line() {
    // SAFETY: `cli`, the op's native lowering (idl/pvi.pvi); a site is only
    // emitted in ring 0 code.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// The out-of-line `irq_enable` an unpatched site calls.
pub extern "C" fn irq_enable_out_of_line() {
    // SAFETY: `sti`, the op's native lowering, as above.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

/// One patchable site of op `$op` (a [`HotOp`] byte) whose unpatched form
/// calls `$f`. Used through the per-op macros below.
#[doc(hidden)]
#[macro_export]
macro_rules! __pvi_patchable_site {
    ($op:expr, $f:path) => {
        // SAFETY: a call to an `extern "C"` function with no arguments,
        // every register the C ABI lets it change declared clobbered; the
        // record only describes the site.
        unsafe {
            core::arch::asm!(
                "772:",
                "call {f}",
                ".pushsection .pvi_sites, \"a\"",
                ".balign 8",
                ".quad 772b",
                ".byte {op}, 5, 0, 0, 0, 0, 0, 0",
                ".popsection",
                f = sym $f,
                op = const $op as u8,
                clobber_abi("C"),
            )
        }
    };
}

/// A patchable `irq_disable` site: a call until [`apply`] rewrites it.
#[macro_export]
macro_rules! patchable_irq_disable {
    () => {
        $crate::__pvi_patchable_site!(
            $crate::patch::HotOp::IrqDisable,
            $crate::patch::irq_disable_out_of_line
        )
    };
}

/// A patchable `irq_enable` site: a call until [`apply`] rewrites it.
#[macro_export]
macro_rules! patchable_irq_enable {
    () => {
        $crate::__pvi_patchable_site!(
            $crate::patch::HotOp::IrqEnable,
            $crate::patch::irq_enable_out_of_line
        )
    };
}

/// Rewrite every site in `sites` whose op `native` says is served natively
/// to the op's instruction plus padding; the others keep their call. The
/// count of sites rewritten.
///
/// # Safety
///
/// `sites` must be the kernel's `.pvi_sites` records; the text they name
/// must be writable, and no other CPU may be running it (at boot, before
/// the others start).
pub unsafe fn apply(sites: &[Site], native: impl Fn(HotOp) -> bool) -> usize {
    let mut patched = 0;
    for site in sites {
        let Some(op) = HotOp::from_byte(site.op) else {
            continue;
        };
        if site.len != 5 || !native(op) {
            continue;
        }
        for (i, byte) in op.native_bytes().iter().enumerate() {
            // SAFETY: the caller guarantees the site is writable text that
            // no CPU is executing; the record says it is 5 bytes long.
            unsafe { ((site.at + i) as *mut u8).write_volatile(*byte) };
        }
        patched += 1;
    }
    // Cross-modifying code: a serializing instruction before the patched
    // bytes run (Intel SDM vol. 3, 9.1.3).
    let _ = crate::arch::cpuid(0, 0);
    patched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_natively_served_ops_are_rewritten_and_only_five_byte_sites() {
        let mut text = [0xe8u8; 15];
        let base = text.as_mut_ptr() as usize;
        let site = |at: usize, op: u8, len: u8| Site {
            at: base + at,
            op,
            len,
            _pad: [0; 6],
        };
        let sites = [site(0, 0, 5), site(5, 1, 5), site(10, 0, 4)];
        // SAFETY: every site lies inside `text`, which this test owns.
        let n = unsafe { apply(&sites, |op| op == HotOp::IrqDisable) };
        assert_eq!(n, 1);
        assert_eq!(text[..5], [0xfa, 0x0f, 0x1f, 0x40, 0x00]);
        assert_eq!(
            text[5..],
            [0xe8; 10],
            "irq_enable kept its call; a 4-byte site is left"
        );
    }
}
