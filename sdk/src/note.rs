//! The guest's `.note.pvi` ELF note: which interface version it was built
//! for, the interface's fingerprint, and the backends it links, so that
//! `pvi inspect KERNEL.elf` (or a hypervisor's loader) can tell without
//! running it. A kernel emits it once with [`guest_note!`](crate::guest_note)
//! and keeps the section in its linker script.
//!
//! Each record is a standard ELF note (`Elf64_Nhdr`): name `"pvi"`, then:
//!
//! | type | descriptor |
//! |---|---|
//! | [`NT_PVI_INTERFACE`] | `NAME VERSION`, NUL-terminated: the SDK's interface |
//! | [`NT_PVI_FINGERPRINT`] | the interface fingerprint, u64 little-endian |
//! | [`NT_PVI_GUEST_INTERFACE`] | `MAJOR.MINOR`, NUL-terminated: the version built for |
//! | [`NT_PVI_BACKENDS`] | backend names, comma-separated, NUL-terminated |

/// Note type: the interface name and version of the SDK.
pub const NT_PVI_INTERFACE: u32 = 1;
/// Note type: [`crate::INTERFACE_FINGERPRINT`].
pub const NT_PVI_FINGERPRINT: u32 = 2;
/// Note type: [`crate::generated::GUEST_INTERFACE`], the version the guest
/// was built for.
pub const NT_PVI_GUEST_INTERFACE: u32 = 3;
/// Note type: the backends the guest links.
pub const NT_PVI_BACKENDS: u32 = 4;
/// The notes' owner name.
pub const NOTE_NAME: &[u8; 4] = b"pvi\0";

/// One ELF note with an `N`-byte (4-byte padded) descriptor.
#[repr(C, align(4))]
pub struct Note<const N: usize> {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 4],
    desc: [u8; N],
}

/// `len` rounded up to the notes' 4-byte alignment.
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl<const N: usize> Note<N> {
    /// A note of type `kind` whose descriptor is `desc`. `N` must be
    /// `padded(desc.len())`: a mismatch fails the build.
    pub const fn new(kind: u32, desc: &[u8]) -> Note<N> {
        assert!(N == padded(desc.len()), "descriptor size");
        let mut out = [0u8; N];
        let mut i = 0;
        while i < desc.len() {
            out[i] = desc[i];
            i += 1;
        }
        Note {
            namesz: NOTE_NAME.len() as u32,
            descsz: desc.len() as u32,
            kind,
            name: *NOTE_NAME,
            desc: out,
        }
    }
}

/// The length of `words` joined by `separator`, plus a NUL.
pub const fn joined_len(words: &[&str], separator: &str) -> usize {
    let mut len = 1;
    let mut i = 0;
    while i < words.len() {
        if i > 0 {
            len += separator.len();
        }
        len += words[i].len();
        i += 1;
    }
    len
}

/// `words` joined by `separator`, NUL-terminated, in an `N`-byte array
/// (`N` at least [`joined_len`]).
pub const fn joined<const N: usize>(words: &[&str], separator: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < words.len() {
        if i > 0 {
            let mut j = 0;
            while j < separator.len() {
                out[at] = separator.as_bytes()[j];
                at += 1;
                j += 1;
            }
        }
        let mut j = 0;
        while j < words[i].len() {
            out[at] = words[i].as_bytes()[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// `MAJOR.MINOR`, NUL-terminated, and its length (at most 12 bytes:
/// two 5-digit numbers, a dot and the NUL).
pub const fn version_text(version: (u16, u16)) -> ([u8; 12], usize) {
    let mut out = [0u8; 12];
    let mut at = 0;
    let mut part = 0;
    while part < 2 {
        let n = if part == 0 { version.0 } else { version.1 };
        let mut digits = [0u8; 5];
        let mut count = 0;
        let mut v = n;
        loop {
            digits[count] = b'0' + (v % 10) as u8;
            count += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while count > 0 {
            count -= 1;
            out[at] = digits[count];
            at += 1;
        }
        if part == 0 {
            out[at] = b'.';
            at += 1;
        }
        part += 1;
    }
    (out, at + 1)
}

/// Emit the guest's `.note.pvi`: the SDK's interface and fingerprint, the
/// version this build was made for ([`GUEST_INTERFACE`]), and `backends`
/// (a `&[&str]` constant, e.g. `pvi_backends::select::COMPILED_IN`). Use
/// it once, in the kernel crate, whose linker script keeps `.note.pvi`.
///
/// [`GUEST_INTERFACE`]: crate::generated::GUEST_INTERFACE
#[macro_export]
macro_rules! guest_note {
    (backends: $backends:expr) => {
        const _: () = {
            use $crate::note::{joined, joined_len, padded, version_text, Note};
            const INTERFACE_WORDS: &[&str] =
                &[$crate::generated::INTERFACE_NAME, $crate::INTERFACE_VERSION];
            const INTERFACE_LEN: usize = joined_len(INTERFACE_WORDS, " ");
            const INTERFACE: [u8; INTERFACE_LEN] = joined(INTERFACE_WORDS, " ");
            const BACKENDS: &[&str] = $backends;
            const BACKENDS_LEN: usize = joined_len(BACKENDS, ",");
            const BACKENDS_TEXT: [u8; BACKENDS_LEN] = joined(BACKENDS, ",");
            const GUEST: ([u8; 12], usize) = version_text($crate::generated::GUEST_INTERFACE);
            #[repr(C, align(4))]
            struct Notes(
                Note<{ padded(INTERFACE_LEN) }>,
                Note<8>,
                Note<{ padded(GUEST.1) }>,
                Note<{ padded(BACKENDS_LEN) }>,
            );
            #[used]
            #[link_section = ".note.pvi"]
            static NOTES: Notes = Notes(
                Note::new($crate::note::NT_PVI_INTERFACE, &INTERFACE),
                Note::new(
                    $crate::note::NT_PVI_FINGERPRINT,
                    &$crate::INTERFACE_FINGERPRINT.to_le_bytes(),
                ),
                Note::new(
                    $crate::note::NT_PVI_GUEST_INTERFACE,
                    GUEST.0.split_at(GUEST.1).0,
                ),
                Note::new($crate::note::NT_PVI_BACKENDS, &BACKENDS_TEXT),
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_an_elf_note_header_then_padded_name_and_descriptor() {
        let note: Note<8> = Note::new(NT_PVI_INTERFACE, b"pvi 1\0");
        // SAFETY: `Note<8>` is repr(C) plain data: 12 header bytes, 4 name
        // bytes, 8 descriptor bytes, no padding between them.
        let bytes: [u8; 24] = unsafe { core::mem::transmute(note) };
        assert_eq!(&bytes[0..4], &4u32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &6u32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &NT_PVI_INTERFACE.to_ne_bytes());
        assert_eq!(&bytes[12..16], b"pvi\0");
        assert_eq!(&bytes[16..24], b"pvi 1\0\0\0");
    }

    #[test]
    fn words_join_with_a_trailing_nul() {
        const WORDS: &[&str] = &["kvm", "xen"];
        assert_eq!(joined_len(WORDS, ","), 8);
        assert_eq!(&joined::<8>(WORDS, ","), b"kvm,xen\0");
        assert_eq!(joined_len(&[], ","), 1);
    }

    #[test]
    fn versions_print_as_major_dot_minor() {
        let (text, len) = version_text((0, 1));
        assert_eq!(&text[..len], b"0.1\0");
        let (text, len) = version_text((12, 345));
        assert_eq!(&text[..len], b"12.345\0");
    }
}
