//! The cpio "newc" archive format, which Linux unpacks as its initramfs:
//! each entry a 110-byte ASCII header (`070701` and thirteen 8-digit hex
//! fields), the NUL-terminated name, the data, each padded to 4 bytes;
//! `TRAILER!!!` ends it. Linux also accepts several archives one after
//! another, which lets a cached base and a small per-boot part be joined.

/// A newc archive being written in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

/// `mode` bits of the entry kinds written here.
const DIRECTORY: u32 = 0o040_000;
const REGULAR: u32 = 0o100_000;
const SYMLINK: u32 = 0o120_000;

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive {
            bytes: Vec::new(),
            next_inode: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime: reproducible archives
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() as u32 + 1,
            0, // check
        ];
        self.next_inode += 1;
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// A directory (its parents must come first).
    pub fn dir(&mut self, name: &str) {
        self.entry(name, DIRECTORY | 0o755, &[]);
    }

    /// A regular file; `executable` sets mode 0755, else 0644.
    pub fn file(&mut self, name: &str, data: &[u8], executable: bool) {
        let permissions = if executable { 0o755 } else { 0o644 };
        self.entry(name, REGULAR | permissions, data);
    }

    /// A symbolic link `name` → `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, SYMLINK | 0o777, target.as_bytes());
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_names_and_data_are_padded_to_four_bytes() {
        let mut a = Archive::new();
        a.file("init", b"#!/bin/sh\n", true);
        let bytes = a.finish();
        assert_eq!(&bytes[..6], b"070701");
        // mode of the first entry: a regular file, 0755.
        assert_eq!(&bytes[14..22], b"000081ed");
        // size 10, name size 5 ("init" and its NUL).
        assert_eq!(&bytes[54..62], b"0000000a");
        assert_eq!(&bytes[94..102], b"00000005");
        // 110 + 5 = 115, padded to 116; data starts there.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert!(bytes.len().is_multiple_of(4));
        let trailer = bytes.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(trailer.is_some());
    }
}
