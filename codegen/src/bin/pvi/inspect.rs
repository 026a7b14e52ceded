//! `pvi inspect KERNEL.elf`: the `.note.pvi` a guest built with the SDK
//! carries (see `pvi_sdk::note`).

use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::Endianness;
use std::path::Path;
use std::process::ExitCode;

/// Note types, as `pvi_sdk::note` defines them.
const NT_PVI_INTERFACE: u32 = 1;
const NT_PVI_FINGERPRINT: u32 = 2;
const NT_PVI_GUEST_INTERFACE: u32 = 3;
const NT_PVI_BACKENDS: u32 = 4;

/// What a guest's notes say.
#[derive(Default)]
struct Notes {
    interface: Option<String>,
    fingerprint: Option<u64>,
    guest: Option<String>,
    backends: Option<String>,
}

fn text(desc: &[u8]) -> String {
    String::from_utf8_lossy(desc.split(|&b| b == 0).next().unwrap_or_default()).into_owned()
}

fn read(data: &[u8]) -> Result<Notes, String> {
    let elf =
        ElfFile64::<Endianness>::parse(data).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = elf.endian();
    let sections = elf
        .elf_header()
        .sections(endian, data)
        .map_err(|e| format!("unreadable section table: {e}"))?;
    let mut notes = Notes::default();
    for section in sections.iter() {
        let Some(mut iter) = section
            .notes(endian, data)
            .map_err(|e| format!("unreadable note section: {e}"))?
        else {
            continue;
        };
        while let Some(note) = iter.next().map_err(|e| format!("malformed note: {e}"))? {
            if note.name() != b"pvi" {
                continue;
            }
            let desc = note.desc();
            match note.n_type(endian) {
                NT_PVI_INTERFACE => notes.interface = Some(text(desc)),
                NT_PVI_FINGERPRINT => {
                    notes.fingerprint = desc
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                }
                NT_PVI_GUEST_INTERFACE => notes.guest = Some(text(desc)),
                NT_PVI_BACKENDS => notes.backends = Some(text(desc)),
                _ => {}
            }
        }
    }
    Ok(notes)
}

/// Print the notes of `elf`; exit 1 when it has none.
pub fn run(elf: &Path) -> ExitCode {
    let data = match std::fs::read(elf) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: {e}", elf.display());
            return ExitCode::from(2);
        }
    };
    let notes = match read(&data) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {}: {e}", elf.display());
            return ExitCode::from(2);
        }
    };
    let Some(interface) = notes.interface else {
        eprintln!(
            "error: {}: no .note.pvi (a guest records one with `pvi_sdk::guest_note!`)",
            elf.display()
        );
        return ExitCode::from(1);
    };
    let unknown = || "(not recorded)".to_string();
    println!("interface:   {interface}");
    println!(
        "fingerprint: {}",
        notes
            .fingerprint
            .map_or_else(unknown, |f| format!("{f:#018x}"))
    );
    println!("built for:   {}", notes.guest.unwrap_or_else(unknown));
    println!("backends:    {}", notes.backends.unwrap_or_else(unknown));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_elf_is_an_error_not_a_panic() {
        assert!(read(b"not an elf").is_err());
        assert!(read(&[]).is_err());
    }
}
