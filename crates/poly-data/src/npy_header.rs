//! The `.npy` header, parsed before anything is allocated from it.
//!
//! A header is `\x93NUMPY`, a version, a little-endian length (2 bytes in version 1, 4 in 2 and 3)
//! and a Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
//! A hostile file can claim a 4 GiB header, nest brackets until a general parser takes
//! exponential time, or give a shape whose product wraps. So: the length is capped (as numpy
//! caps it) and checked against the file's size before it is read, the dict is read by a parser
//! that accepts exactly the three keys with flat values (no nesting can reach it), and the shape's
//! product is computed with checked arithmetic.

/// numpy's own limit (`max_header_size` of `np.load`).
pub const MAX_HEADER_BYTES: u64 = 10_000;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What the header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The dtype string, e.g. `<f4`.
    pub descr: String,
    /// Column-major data.
    pub fortran_order: bool,
    /// The shape.
    pub shape: Vec<usize>,
    /// Bytes from the start of the file to the data.
    pub data_offset: u64,
}

/// Bytes of the fixed prefix (magic, version, length field) and the header length, from the first
/// bytes of a file of `file_len` bytes.
///
/// # Errors
/// A reason string for a bad magic, an unknown version, a header over [`MAX_HEADER_BYTES`] or
/// longer than the file.
pub fn prefix(first: &[u8], file_len: u64) -> Result<(u64, u64), String> {
    if first.len() < 10 || &first[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (prefix, header_len) = match first[6] {
        1 => (10, u64::from(u16::from_le_bytes([first[8], first[9]]))),
        2 | 3 if first.len() >= 12 => (
            12,
            u64::from(u32::from_le_bytes([
                first[8], first[9], first[10], first[11],
            ])),
        ),
        2 | 3 => return Err("truncated .npy header".into()),
        v => {
            return Err(format!(
                ".npy format version {v} is not supported (1, 2 or 3)"
            ));
        }
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit numpy uses"
        ));
    }
    if prefix + header_len > file_len {
        return Err(format!(
            "header length {header_len} runs past the end of the {file_len}-byte file"
        ));
    }
    Ok((prefix, header_len))
}

/// Parses the dict literal of a header that starts `prefix` bytes into the file.
///
/// # Errors
/// A reason string naming what is malformed.
pub fn parse(text: &[u8], prefix: u64) -> Result<Header, String> {
    let text = std::str::from_utf8(text).map_err(|_| "header is not UTF-8 text".to_owned())?;
    let mut p = Parser {
        s: text.trim_end_matches(['\n', ' ', '\0']).as_bytes(),
        i: 0,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.skip_space();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.skip_space();
        p.expect(b':')?;
        p.skip_space();
        match key.as_str() {
            "descr" if descr.is_none() => descr = Some(p.string()?),
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            "shape" if shape.is_none() => shape = Some(p.shape()?),
            other => return Err(format!("unexpected or repeated header key {other:?}")),
        }
        p.skip_space();
        if !p.eat(b',') {
            p.skip_space();
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_space();
    if p.i != p.s.len() {
        return Err("trailing characters after the header dict".into());
    }
    Ok(Header {
        descr: descr.ok_or("header lacks 'descr'")?,
        fortran_order: fortran.ok_or("header lacks 'fortran_order'")?,
        shape: shape.ok_or("header lacks 'shape'")?,
        data_offset: prefix + text.len() as u64,
    })
}

/// A cursor over the header's bytes.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed header: expected {:?} at byte {}",
                c as char, self.i
            ))
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A quoted string without escapes (dtype strings and keys have none).
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(format!(
                    "malformed header: expected a string at byte {}",
                    self.i
                ));
            }
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == quote {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(s);
            }
            if c == b'\\' {
                return Err("escapes in header strings are not supported".into());
            }
            self.i += 1;
        }
        Err("unterminated string in the header".into())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(value);
            }
        }
        Err(format!(
            "malformed header: expected True or False at byte {}",
            self.i
        ))
    }

    /// `(a, b, …)` of non-negative integers, a trailing comma allowed; no nesting.
    fn shape(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_space();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if start == self.i {
                return Err(format!(
                    "malformed shape: expected a non-negative integer at byte {start}"
                ));
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
            let dim: usize = digits
                .parse()
                .map_err(|_| format!("shape entry {digits} does not fit in 64 bits"))?;
            dims.push(dim);
            self.skip_space();
            if !self.eat(b',') {
                self.skip_space();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_headers_parse() {
        let h = parse(
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n",
            10,
        )
        .unwrap();
        assert_eq!(h.descr, "<f4");
        assert!(!h.fortran_order);
        assert_eq!(h.shape, [2, 3]);
        let h = parse(
            b"{\"shape\": (7,), \"fortran_order\": True, \"descr\": \">f8\"}",
            12,
        )
        .unwrap();
        assert_eq!(
            (h.shape, h.fortran_order, h.descr.as_str()),
            (vec![7], true, ">f8")
        );
        assert_eq!(
            parse(b"{'descr':'<f8','fortran_order':False,'shape':()}", 10)
                .unwrap()
                .shape,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn hostile_headers_are_refused_quickly() {
        for bad in [
            &b"{'descr': '<f4', 'fortran_order': False, 'shape': ((2, 3),), }"[..],
            b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
            b"{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
            b"{'descr': '<f4', 'fortran_order': False}",
            b"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing",
        ] {
            assert!(parse(bad, 10).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Deep nesting: one byte of look-ahead, so it fails at the second bracket.
        let deep = format!("{{'shape': {}", "(".repeat(5000));
        let started = std::time::Instant::now();
        assert!(parse(deep.as_bytes(), 10).is_err());
        assert!(started.elapsed().as_secs() < 1);
    }

    #[test]
    fn header_lengths_are_checked_against_the_cap_and_the_file() {
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        v2.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(prefix(&v2, 1400).unwrap_err().contains("limit"));
        let mut v1 = b"\x93NUMPY\x01\x00".to_vec();
        v1.extend_from_slice(&200u16.to_le_bytes());
        assert!(prefix(&v1, 100).unwrap_err().contains("past the end"));
        assert_eq!(prefix(&v1, 1000).unwrap(), (10, 200));
        assert!(prefix(b"\x93NUMPY\x09\x00\x00\x00", 100).is_err());
        assert!(prefix(b"PK\x03\x04", 100).is_err());
    }
}
