//! Records that code anywhere in the kernel emits into one link section
//! (hypercall fix-ups, patchable sites), found again without help from the
//! kernel's link.
//!
//! The section's name is an identifier, so every linker (GNU ld, LLVM's
//! lld) defines `__start_<name>` and `__stop_<name>` around it, with or
//! without a linker script; each record is emitted retained ("R"), so
//! `--gc-sections` keeps it, and writable ("w"), so that a
//! position-independent link may relocate the addresses in it.

/// A function `$vis fn $name() -> &'static [$record]` listing the
/// `$record`s in section `$section`, whose bounds are `$start` and
/// `$stop` (`__start_<section>`, `__stop_<section>`).
macro_rules! section_records {
    ($(#[$doc:meta])* $vis:vis fn $name:ident() -> [$record:ty] in $section:literal
     between $start:ident and $stop:ident) => {
        $(#[$doc])*
        $vis fn $name() -> &'static [$record] {
            extern "C" {
                static $start: $record;
                static $stop: $record;
            }
            // SAFETY: an empty contribution to the section, in the same
            // object as the two references below, so that the section (and
            // with it the symbols) exists even in a kernel that emits no
            // record; it reads and writes nothing.
            unsafe {
                core::arch::asm!(
                    concat!(".pushsection ", $section, ", \"awR\""),
                    ".balign 8",
                    ".popsection",
                    options(nomem, nostack, preserves_flags)
                );
            }
            // SAFETY: the linker bounds the section with the two symbols;
            // it holds only records of this type, laid out back to back,
            // 8-byte aligned, by the code that emits them, and only a
            // position-independent link's relocation writes it, before
            // the kernel runs.
            unsafe {
                let start = core::ptr::addr_of!($start);
                let stop = core::ptr::addr_of!($stop);
                let count = (stop as usize - start as usize) / core::mem::size_of::<$record>();
                core::slice::from_raw_parts(start, count)
            }
        }
    };
}

pub(crate) use section_records;
