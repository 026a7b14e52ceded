//! Patchable call sites for hot ops, as Linux's alternatives: a site is
//! emitted as a `call` to an out-of-line routine, then a jump over room
//! for the longest inline form a hypervisor declares for the op
//! ([`HotOp::site_len`]), and records itself in the `pvi_sites` link
//! section, with the op's native instructions, encoded by the assembler
//! from the IDL's `native asm` template, in `.pvi_replacements`. Once the
//! backend is known, a kernel rewrites each site in place ([`apply`]): to
//! the native instructions, or to the hypervisor's inline form (the IDL's
//! `inline`, e.g. Xen PV's store into `vcpu_info`), so the hot path
//! carries no call at all; or to a direct call to the backend's own
//! routine, so it carries no dispatch. What is left of a site after its
//! new instructions is skipped by one NOP or one short jump.
//!
//! [`sites`] finds the records in any link, with or without a linker
//! script (the linker bounds the section with `__start_pvi_sites` and
//! `__stop_pvi_sites`, and keeps it and the replacements it points to
//! under `--gc-sections`). The kernel's text must be writable while
//! [`apply`] runs.

/// One recorded call site (24 bytes, as [`__pvi_patchable_site`](crate::__pvi_patchable_site) lays it
/// out).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// The address of the site's first byte.
    pub at: usize,
    /// Where the op's native instructions are, if it has any.
    pub replacement: usize,
    /// Which op ([`HotOp`] as a byte).
    pub op: u8,
    /// The site's length in bytes.
    pub len: u8,
    /// The native instructions' length in bytes (0: none, only calls).
    pub replacement_len: u8,
    _pad: [u8; 5],
}

/// The ops a site may be emitted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HotOp {
    /// `irq_disable`: `cli`.
    IrqDisable = 0,
    /// `irq_enable`: `sti`.
    IrqEnable = 1,
    /// `irq_save`: `pushfq; pop rax; cli`, the flags returned in `rax`.
    IrqSave = 2,
    /// `irq_restore`: `push rdi; popfq`, the flags taken in `rdi`.
    IrqRestore = 3,
    /// `eoi`: no fixed instruction (x2APIC MSR or xAPIC MMIO, chosen at run
    /// time), so its sites are only ever redirected.
    Eoi = 4,
}

impl HotOp {
    /// Every op, in byte order.
    pub const ALL: [HotOp; 5] = [
        HotOp::IrqDisable,
        HotOp::IrqEnable,
        HotOp::IrqSave,
        HotOp::IrqRestore,
        HotOp::Eoi,
    ];

    fn from_byte(b: u8) -> Option<HotOp> {
        HotOp::ALL.get(usize::from(b)).copied()
    }

    /// The op's name in the IDL.
    pub fn name(self) -> &'static str {
        match self {
            HotOp::IrqDisable => "irq_disable",
            HotOp::IrqEnable => "irq_enable",
            HotOp::IrqSave => "irq_save",
            HotOp::IrqRestore => "irq_restore",
            HotOp::Eoi => "eoi",
        }
    }

    /// A site's length in bytes: a `call` and a short jump over the rest,
    /// room for the longest inline form any hypervisor of the IDL gives the
    /// op (Xen PV's, whose `irq_restore` is 34 bytes; a test holds every
    /// form to it). `eoi`'s sites are only ever a call.
    pub const fn site_len(self) -> usize {
        match self {
            HotOp::IrqDisable => 9,
            HotOp::IrqEnable => 25,
            HotOp::IrqSave => 27,
            HotOp::IrqRestore => 34,
            HotOp::Eoi => 5,
        }
    }

    /// The op's `native asm` template from the IDL, with its operands
    /// bound to the registers of the C ABI a site's call uses (the result
    /// in `rax`, the first argument in `rdi`); `None` for an op whose
    /// native form is not one fixed sequence.
    pub fn native_template(self) -> Option<&'static str> {
        match self {
            HotOp::IrqDisable => Some(crate::__pvi_native_template!(irq_disable)),
            HotOp::IrqEnable => Some(crate::__pvi_native_template!(irq_enable)),
            HotOp::IrqSave => Some(crate::__pvi_native_template!(irq_save)),
            HotOp::IrqRestore => Some(crate::__pvi_native_template!(irq_restore)),
            HotOp::Eoi => None,
        }
    }
}

/// A hypervisor's inline form of a hot op, as assembled from the IDL's
/// `inline` (`for_each_inline_sequence!`): its bytes, and where the
/// displacement of its one `call` ends, which [`apply`] moves with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// The instructions.
    pub bytes: &'static [u8],
    /// The offset just past the `call`'s 32-bit displacement; 0 for a
    /// form without a call.
    pub call_end: usize,
}

/// What [`apply`] makes of one site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patch {
    /// Leave the call to the out-of-line routine.
    Keep,
    /// The native instructions.
    Native,
    /// A hypervisor's inline form in place of the call.
    Inline(Sequence),
    /// A direct call to this callee-save routine, which changes no register
    /// but the op's result (an irq op served by a backend without an
    /// inline form: the site must not run the native instruction).
    CalleeSave(usize),
    /// A direct call to this routine (an `extern "C"` function with the
    /// op's signature, e.g. the selected backend's own). Only for `eoi`:
    /// an irq op's site promises its caller that no register changes (its
    /// unpatched call goes through a callee-save entry), which a C function
    /// does not keep, so [`apply`] keeps such a site instead.
    Call(usize),
}

/// What [`apply`] did, site by site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Sites rewritten to their native instructions.
    pub native: usize,
    /// Sites rewritten to a hypervisor's inline form.
    pub inline: usize,
    /// Sites rewritten to a direct call (to a backend's own routine or a
    /// callee-save entry).
    pub direct: usize,
    /// Sites left as they were: kept, an unknown op, a record that does
    /// not fit its site, or a target out of a `call`'s reach.
    pub kept: usize,
}

// Callee-save entry points, as Linux's PV_CALLEE_SAVE thunks: an
// unpatched irq site calls one of these, which is the op's native
// instructions and `ret`, so it changes no register but the op's result.
// The site then clobbers nothing its caller must save or reload: after
// patching, `irq_restore`'s site is its `push rdi; popfq` and a NOP, with
// no `mov` to refill `rdi`; before, it costs a `call` and a `ret` more.
core::arch::global_asm!(
    ".pushsection .text.pvi_callee_save, \"ax\"",
    ".balign 16",
    ".globl __pvi_irq_disable_callee_save",
    "__pvi_irq_disable_callee_save:",
    crate::__pvi_native_template!(irq_disable),
    "ret",
    ".balign 16",
    ".globl __pvi_irq_enable_callee_save",
    "__pvi_irq_enable_callee_save:",
    crate::__pvi_native_template!(irq_enable),
    "ret",
    ".balign 16",
    ".globl __pvi_irq_save_callee_save",
    "__pvi_irq_save_callee_save:",
    crate::__pvi_native_template!(irq_save),
    "ret",
    ".balign 16",
    ".globl __pvi_irq_restore_callee_save",
    "__pvi_irq_restore_callee_save:",
    crate::__pvi_native_template!(irq_restore),
    "ret",
    ".popsection",
);

// SAFETY: each name is defined by the `global_asm!` above, as a routine
// that changes no register but the op's result.
unsafe extern "C" {
    /// `cli; ret`: every register kept.
    #[doc(hidden)]
    pub fn __pvi_irq_disable_callee_save();
    /// `sti; ret`: every register kept.
    #[doc(hidden)]
    pub fn __pvi_irq_enable_callee_save();
    /// `pushfq; pop rax; cli; ret`: every register but `rax` kept.
    #[doc(hidden)]
    pub fn __pvi_irq_save_callee_save();
    /// `push rdi; popfq; ret` (flags in `rdi`): every register kept.
    #[doc(hidden)]
    pub fn __pvi_irq_restore_callee_save();
}

/// The native instructions of each hot op with a fixed sequence, as both
/// [`HotOp::native_template`] and the site macros use them (one text, so
/// the test against the IDL covers what is assembled).
#[doc(hidden)]
#[macro_export]
macro_rules! __pvi_native_template {
    (irq_disable) => {
        "cli"
    };
    (irq_enable) => {
        "sti"
    };
    (irq_save) => {
        "pushfq; pop rax; cli"
    };
    (irq_restore) => {
        "push rdi; popfq"
    };
}

/// One patchable site of op `$op` (a [`HotOp`]), [`HotOp::site_len`] bytes,
/// whose unpatched form calls `$f`, with the op's native instructions `$native` (`""` for none) and
/// any further `asm!` operands: the registers `$f` reads and writes, and
/// for an `extern "C"` function (`eoi`'s) `clobber_abi("C")`. An irq op's
/// `$f` is its callee-save entry, which changes no register but the
/// declared operands, so its site clobbers nothing else. Used through the
/// per-op macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __pvi_patchable_site {
    ($op:expr, $f:path, $native:expr $(, $($operand:tt)+)?) => {
        // SAFETY: a call to `$f`, every register it may change declared
        // among the operands (outputs, or the C ABI's clobbers), and only
        // RFLAGS.IF changed besides (and the arithmetic flags, which asm!
        // assumes changed); the records only describe the site.
        unsafe {
            core::arch::asm!(
                "772:",
                "call {f}",
                // Room for an inline form: a short jump over it (`jmp rel8`,
                // written as bytes so that its size is fixed).
                ".if {len} > 5",
                ".byte 0xeb, {len} - 7",
                ".skip {len} - 7, 0xcc",
                ".endif",
                "773:",
                ".pushsection .pvi_replacements, \"a\"",
                "774:",
                $native,
                "775:",
                ".popsection",
                ".pushsection pvi_sites, \"awR\"",
                ".balign 8",
                ".quad 772b",
                ".quad 774b",
                ".byte {op}, 773b - 772b, 775b - 774b, 0, 0, 0, 0, 0",
                ".popsection",
                f = sym $f,
                op = const $op as u8,
                len = const $op.site_len(),
                $($($operand)+,)?
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
            $crate::patch::__pvi_irq_disable_callee_save,
            $crate::__pvi_native_template!(irq_disable)
        )
    };
}

/// A patchable `irq_enable` site: a call until [`apply`] rewrites it.
#[macro_export]
macro_rules! patchable_irq_enable {
    () => {
        $crate::__pvi_patchable_site!(
            $crate::patch::HotOp::IrqEnable,
            $crate::patch::__pvi_irq_enable_callee_save,
            $crate::__pvi_native_template!(irq_enable)
        )
    };
}

/// A patchable `irq_save` site, evaluating to the saved
/// [`IrqFlags`](crate::types::IrqFlags).
#[macro_export]
macro_rules! patchable_irq_save {
    () => {{
        let flags: u64;
        $crate::__pvi_patchable_site!(
            $crate::patch::HotOp::IrqSave,
            $crate::patch::__pvi_irq_save_callee_save,
            $crate::__pvi_native_template!(irq_save),
            lateout("rax") flags
        );
        $crate::types::IrqFlags::from_bits_retain(flags)
    }};
}

/// A patchable `irq_restore` site, taking the
/// [`IrqFlags`](crate::types::IrqFlags) an `irq_save` returned.
#[macro_export]
macro_rules! patchable_irq_restore {
    ($flags:expr) => {{
        let flags: $crate::types::IrqFlags = $flags;
        $crate::__pvi_patchable_site!(
            $crate::patch::HotOp::IrqRestore,
            $crate::patch::__pvi_irq_restore_callee_save,
            $crate::__pvi_native_template!(irq_restore),
            in("rdi") flags.bits()
        );
    }};
}

/// A patchable `eoi` site calling `$f` (an `extern "C" fn()`, typically
/// one that goes through the run-time selected backend) until [`apply`]
/// redirects it to the backend's own routine.
#[macro_export]
macro_rules! patchable_eoi {
    ($f:path) => {
        $crate::__pvi_patchable_site!($crate::patch::HotOp::Eoi, $f, "", clobber_abi("C"))
    };
}

/// The longest site [`apply`] rewrites.
const MAX_SITE: usize = 64;

/// A 1-, 2-, 3- and 4-byte NOP (Intel SDM vol. 2B, "NOP"), by length less
/// one: what is left of a site after its new instructions, if that short.
const NOPS: [&[u8]; 4] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
];

/// A `len`-byte site made of `code` and one instruction that skips the
/// rest: a NOP of the rest's length, or a short jump over it (its bytes
/// `int3`), so that any form costs one instruction more at most.
fn site_bytes(code: &[u8], len: usize) -> Option<[u8; MAX_SITE]> {
    if code.is_empty() || code.len() > len || len > MAX_SITE {
        return None;
    }
    let mut out = [0xccu8; MAX_SITE];
    out[..code.len()].copy_from_slice(code);
    let rest = len - code.len();
    match rest {
        0 => {}
        1..=4 => out[code.len()..len].copy_from_slice(NOPS[rest - 1]),
        _ => {
            out[code.len()] = 0xeb;
            out[code.len() + 1] = u8::try_from(rest - 2).ok()?;
        }
    }
    Some(out)
}

/// The 5 bytes of a `call` at `at` to `target`, if within reach.
fn call_site(at: usize, target: usize) -> Option<[u8; 5]> {
    let next = at.checked_add(5)?;
    let delta = i32::try_from(target as i64 - next as i64).ok()?;
    let d = delta.to_le_bytes();
    Some([0xe8, d[0], d[1], d[2], d[3]])
}

/// `sequence` as it must read at `at`: its `call`'s displacement moved by
/// the distance from where it was assembled, if still within reach and if
/// the byte before the displacement is a `call` (`e8`).
fn moved(sequence: &Sequence, at: usize) -> Option<[u8; MAX_SITE]> {
    let len = sequence.bytes.len();
    let mut out = [0u8; MAX_SITE];
    out.get_mut(..len)?.copy_from_slice(sequence.bytes);
    if sequence.call_end != 0 {
        let end = sequence.call_end;
        if end < 5 || end > len || out[end - 5] != 0xe8 {
            return None;
        }
        let field: [u8; 4] = out[end - 4..end].try_into().ok()?;
        let target = (sequence.bytes.as_ptr() as i64 + end as i64)
            .checked_add(i64::from(i32::from_le_bytes(field)))?;
        let delta = i32::try_from(target - (at as i64 + end as i64)).ok()?;
        out[end - 4..end].copy_from_slice(&delta.to_le_bytes());
    }
    Some(out)
}

crate::link_records::section_records! {
    /// Every patchable site the kernel links, whichever crate emitted it.
    pub fn sites() -> [Site] in "pvi_sites" between __start_pvi_sites and __stop_pvi_sites
}

/// Rewrite every site in `sites` as `decide` says for its op; then
/// serialize, so the new bytes are what runs next.
///
/// # Safety
///
/// `sites` must be the kernel's `pvi_sites` records ([`sites`]), whose replacement
/// bytes are readable; the text they name must be writable, and no other
/// CPU may be running it (at boot, before the others start). A
/// [`Patch::Call`] target must be an `extern "C"` function with the op's
/// signature.
pub unsafe fn apply(sites: &[Site], decide: impl Fn(HotOp) -> Patch) -> Applied {
    let mut applied = Applied::default();
    for site in sites {
        let len = usize::from(site.len);
        let rewrite: Option<([u8; MAX_SITE], &mut usize)> =
            match HotOp::from_byte(site.op).map(&decide) {
                Some(Patch::Native) => {
                    let native = if site.replacement_len == 0 {
                        &[][..]
                    } else {
                        // SAFETY: the caller vouches for the record, whose
                        // replacement is `replacement_len` readable bytes.
                        unsafe {
                            core::slice::from_raw_parts(
                                site.replacement as *const u8,
                                usize::from(site.replacement_len),
                            )
                        }
                    };
                    site_bytes(native, len).map(|b| (b, &mut applied.native))
                }
                Some(Patch::Inline(sequence)) if site.op != HotOp::Eoi as u8 => {
                    moved(&sequence, site.at)
                        .and_then(|code| site_bytes(&code[..sequence.bytes.len()], len))
                        .map(|b| (b, &mut applied.inline))
                }
                Some(Patch::CalleeSave(target)) if site.op != HotOp::Eoi as u8 => {
                    call_site(site.at, target)
                        .and_then(|call| site_bytes(&call, len))
                        .map(|b| (b, &mut applied.direct))
                }
                Some(Patch::Call(target)) if len == 5 && site.op == HotOp::Eoi as u8 => {
                    call_site(site.at, target)
                        .and_then(|call| site_bytes(&call, len))
                        .map(|b| (b, &mut applied.direct))
                }
                _ => None,
            };
        let Some((bytes, count)) = rewrite else {
            applied.kept += 1;
            continue;
        };
        *count += 1;
        for (i, byte) in bytes[..len].iter().enumerate() {
            // SAFETY: the caller guarantees the site is writable text that
            // no CPU is executing; the record says it is `len` bytes long.
            unsafe { ((site.at + i) as *mut u8).write_volatile(*byte) };
        }
    }
    // Cross-modifying code: a serializing instruction before the patched
    // bytes run (Intel SDM vol. 3, 9.1.3).
    let _ = crate::arch::cpuid(0, 0);
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(at: usize, op: HotOp, len: u8, replacement: &[u8]) -> Site {
        Site {
            at,
            replacement: replacement.as_ptr() as usize,
            op: op as u8,
            len,
            replacement_len: replacement.len() as u8,
            _pad: [0; 5],
        }
    }

    #[test]
    fn native_ops_get_their_instructions_padded_with_nops() {
        let mut text = [0xe8u8; 10];
        let base = text.as_mut_ptr() as usize;
        let sites = [
            site(base, HotOp::IrqSave, 5, &[0x9c, 0x58, 0xfa]),
            site(base + 5, HotOp::IrqRestore, 5, &[0x57, 0x9d]),
        ];
        // SAFETY: every site lies inside `text`, which this test owns.
        let applied = unsafe { apply(&sites, |_| Patch::Native) };
        assert_eq!(
            applied,
            Applied {
                native: 2,
                inline: 0,
                direct: 0,
                kept: 0
            }
        );
        assert_eq!(text[..5], [0x9c, 0x58, 0xfa, 0x66, 0x90]);
        assert_eq!(text[5..], [0x57, 0x9d, 0x0f, 0x1f, 0x00]);
    }

    #[test]
    fn a_direct_call_is_relative_to_the_next_instruction() {
        let mut text = [0u8; 5];
        let base = text.as_mut_ptr() as usize;
        let sites = [site(base, HotOp::Eoi, 5, &[])];
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, |_| Patch::Call(base + 5 + 0x1234)) };
        assert_eq!(applied.direct, 1);
        assert_eq!(text, [0xe8, 0x34, 0x12, 0, 0]);
    }

    #[test]
    fn an_irq_site_is_never_made_a_call_to_a_c_function() {
        // Its callers keep values in caller-saved registers across it.
        let mut text = [0xe8u8; 5];
        let base = text.as_mut_ptr() as usize;
        let sites = [site(base, HotOp::IrqRestore, 5, &[0x57, 0x9d])];
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, |_| Patch::Call(base + 5 + 0x10)) };
        assert_eq!(applied.kept, 1);
        assert_eq!(text, [0xe8; 5]);
    }

    #[test]
    fn sites_that_cannot_be_rewritten_are_kept_untouched() {
        let mut text = [0xe8u8; 15];
        let base = text.as_mut_ptr() as usize;
        let sites = [
            // An op with no native form asked to go native.
            site(base, HotOp::Eoi, 5, &[]),
            // Native instructions longer than the site.
            site(base + 5, HotOp::IrqSave, 2, &[0x9c, 0x58, 0xfa]),
            // A call target beyond a rel32's reach.
            site(base + 10, HotOp::IrqDisable, 5, &[0xfa]),
        ];
        let decide = |op| match op {
            HotOp::IrqDisable => Patch::Call(base.wrapping_add(1 << 40)),
            _ => Patch::Native,
        };
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, decide) };
        assert_eq!(
            applied,
            Applied {
                native: 0,
                inline: 0,
                direct: 0,
                kept: 3
            }
        );
        assert_eq!(text, [0xe8; 15]);
    }

    #[test]
    fn the_rest_of_a_long_site_is_one_short_jump() {
        let mut text = [0u8; 9];
        let base = text.as_mut_ptr() as usize;
        let sites = [site(base, HotOp::IrqDisable, 9, &[0xfa])];
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, |_| Patch::Native) };
        assert_eq!(applied.native, 1);
        // cli; jmp +6; six int3 never run.
        assert_eq!(text, [0xfa, 0xeb, 6, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc]);
    }

    #[test]
    fn an_inline_form_is_copied_with_its_call_moved() {
        // mov byte ptr gs:[65], 0; call (to 0x100 past the form's call).
        static FORM: [u8; 14] = [
            0x65, 0xc6, 0x04, 0x25, 0x41, 0, 0, 0, 0x00, 0xe8, 0x00, 0x01, 0, 0,
        ];
        let sequence = Sequence {
            bytes: &FORM,
            call_end: 14,
        };
        // Text near the form, as a kernel's is: a call reaches 2 GiB.
        static mut TEXT: [u8; 25] = [0; 25];
        let base = core::ptr::addr_of_mut!(TEXT) as usize;
        let sites = [site(base, HotOp::IrqEnable, 25, &[0xfb])];
        // SAFETY: as above (the static is this test's alone).
        let applied = unsafe { apply(&sites, |_| Patch::Inline(sequence)) };
        // SAFETY: written above, read once here.
        let text = unsafe { core::ptr::addr_of!(TEXT).read() };
        assert_eq!(applied.inline, 1);
        assert_eq!(text[..10], FORM[..10]);
        let target = FORM.as_ptr() as i64 + 14 + 0x100;
        let rel = i32::from_le_bytes(text[10..14].try_into().unwrap());
        assert_eq!(base as i64 + 14 + i64::from(rel), target);
        assert_eq!(text[14..16], [0xeb, 9]);
    }

    #[test]
    fn an_inline_form_whose_call_is_not_one_is_refused() {
        static FORM: [u8; 5] = [0x90, 0x90, 0x90, 0x90, 0x90];
        let sequence = Sequence {
            bytes: &FORM,
            call_end: 5,
        };
        let mut text = [0xe8u8; 9];
        let base = text.as_mut_ptr() as usize;
        let sites = [site(base, HotOp::IrqDisable, 9, &[0xfa])];
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, |_| Patch::Inline(sequence)) };
        assert_eq!(applied.kept, 1);
        assert_eq!(text, [0xe8; 9]);
    }

    #[test]
    fn a_served_irq_site_can_call_a_callee_save_routine() {
        let mut text = [0u8; 9];
        let base = text.as_mut_ptr() as usize;
        let sites = [site(base, HotOp::IrqDisable, 9, &[0xfa])];
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, |_| Patch::CalleeSave(base + 5 + 0x40)) };
        assert_eq!(applied.direct, 1);
        assert_eq!(text, [0xe8, 0x40, 0, 0, 0, 0x0f, 0x1f, 0x40, 0x00]);
    }

    #[test]
    fn kept_sites_are_counted_and_left() {
        let mut text = [0xe8u8; 5];
        let base = text.as_mut_ptr() as usize;
        let sites = [site(base, HotOp::IrqEnable, 5, &[0xfb])];
        // SAFETY: as above.
        let applied = unsafe { apply(&sites, |_| Patch::Keep) };
        assert_eq!(applied.kept, 1);
        assert_eq!(text, [0xe8; 5]);
    }
}
