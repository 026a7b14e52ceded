//! The IDL's string escapes (`\n \t \r \0 \\ \" \xNN`), decoded in one
//! place: for string literals in `.pvi` files and for a signature given on
//! `pvi new-backend`'s command line.

/// The bytes `body` (a string's text between its quotes) stands for, and
/// where each escape it cannot decode starts and how many bytes it spans,
/// so that the caller can report every one.
pub fn unescape(body: &str) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut value = Vec::new();
    let mut bad = Vec::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let next = chars.next().map(|(_, c)| c);
        let byte = match next {
            Some('n') => Some(b'\n'),
            Some('t') => Some(b'\t'),
            Some('r') => Some(b'\r'),
            Some('0') => Some(0),
            Some('\\') => Some(b'\\'),
            Some('"') => Some(b'"'),
            Some('x') => {
                let hex: String = chars.clone().take(2).map(|(_, c)| c).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if hex.len() == 2 => {
                        chars.next();
                        chars.next();
                        Some(b)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match byte {
            Some(b) => value.push(b),
            None => bad.push((at, 1 + next.map(char::len_utf8).unwrap_or(0))),
        }
    }
    (value, bad)
}

/// What the escapes are, for hints.
pub const ESCAPES: &str = "\\n \\t \\r \\0 \\\\ \\\" and \\xNN";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_bad_ones_are_located() {
        assert_eq!(unescape("Jailhouse\\0\\0\\0").0, b"Jailhouse\0\0\0");
        assert_eq!(unescape("a\\x41").0, b"aA");
        assert_eq!(unescape("a\\q").1, [(1, 2)]);
        assert_eq!(unescape("a\\xZZ").1, [(1, 2)]);
    }
}
