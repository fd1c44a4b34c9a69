//! The well-formedness rules quick-xml leaves to its user, as checks on its events: XML
//! characters, names, references, the XML declaration's pseudo-attributes. Each returns the
//! byte offset of the first violation.

use super::{ErrorKind, XmlError};
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::BytesRef;

type Result<T> = std::result::Result<T, XmlError>;

pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_name_start(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic() || c == '_' || c == ':';
    }
    matches!(c as u32,
        0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF | 0x370..=0x37D | 0x37F..=0x1FFF
        | 0x200C..=0x200D | 0x2070..=0x218F | 0x2C00..=0x2FEF | 0x3001..=0xD7FF
        | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD | 0x10000..=0xEFFFF)
}

fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.');
    }
    is_name_start(c) || matches!(c as u32, 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

fn is_xml_char(c: char) -> bool {
    if (c as u32) < 0x20 {
        return matches!(c, '\t' | '\n' | '\r');
    }
    !matches!(c as u32, 0xFFFE | 0xFFFF)
}

/// Name characters by byte: 1 ASCII that may start a name, 2 ASCII that may only continue
/// one, 4 the colon, 8 a byte >= 0x80 (decode the character, ask `is_name_char`), 0 ends a
/// name.
static NAME: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphabetic() || c == b'_' {
            1
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            2
        } else if c == b':' {
            4
        } else if c >= 0x80 {
            8
        } else {
            0
        };
        i += 1;
    }
    t
};

/// The first character that XML 1.0 allows nowhere in a document (a control character
/// other than tab, LF, CR; U+FFFE; U+FFFF). Checking the whole input once up front is
/// exact, as no production admits them.
pub(super) fn first_non_xml_char(b: &[u8]) -> Option<usize> {
    // 64-byte blocks without branches vectorize; a hit is then located byte by byte.
    let bad = |c: u8| c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r';
    let mut base = 0;
    for chunk in b.chunks(64) {
        if chunk.iter().fold(false, |acc, &c| acc | bad(c)) {
            return chunk.iter().position(|&c| bad(c)).map(|i| base + i);
        }
        base += chunk.len();
    }
    memchr::memmem::find_iter(b, b"\xEF\xBF").find(|&i| matches!(b.get(i + 2), Some(0xBE | 0xBF)))
}

pub(super) fn non_xml_char(text: &str, at: usize) -> XmlError {
    let c = text[at..].chars().next().unwrap_or('\0');
    XmlError::other(at, format!("a non-XML character {c:?}"))
}

pub(super) fn truncated(text: &str) -> XmlError {
    XmlError {
        pos: text.len(),
        kind: ErrorKind::Truncated,
    }
}

/// `expected {what} not '{the character at at}'`.
pub(super) fn unexpected(text: &str, at: usize, what: &str) -> XmlError {
    match text[at..].chars().next() {
        None => truncated(text),
        Some(got) => XmlError::other(at, format!("expected {what} not '{got}'")),
    }
}

/// A QName (`prefix:local` or `local`) at `at`: the (prefix, local) ranges, the prefix
/// empty when there is none. The name ends at the first character that cannot continue it.
pub(super) fn qname(text: &str, at: usize) -> Result<((usize, usize), (usize, usize))> {
    let b = text.as_bytes();
    // Fast path, most names: ASCII, at most one colon.
    let run = |mut i: usize| {
        while i < b.len() && NAME[b[i] as usize] & 3 != 0 {
            i += 1;
        }
        i
    };
    let starts = |i: usize| b.get(i).is_some_and(|&c| NAME[c as usize] == 1);
    let mut end = run(at);
    let mut colon = None;
    if b.get(end) == Some(&b':') {
        colon = Some(end);
        end = run(end + 1);
    }
    if b.get(end).map_or(true, |&c| NAME[c as usize] == 0) && starts(at) {
        match colon {
            None => return Ok(((at, at), (at, end))),
            Some(c) if starts(c + 1) => return Ok(((at, c), (c + 1, end))),
            _ => {}
        }
    }
    let mut i = at;
    let mut colon = None;
    while let Some(&c) = b.get(i) {
        match NAME[c as usize] {
            1 | 2 => i += 1,
            4 => {
                if colon.is_some() {
                    return Err(XmlError::other(at, "invalid name"));
                }
                colon = Some(i);
                i += 1;
            }
            0 => break,
            _ => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                if !is_name_char(ch) {
                    break;
                }
                i += ch.len_utf8();
            }
        }
    }
    let (prefix, local) = match colon {
        Some(c) => ((at, c), (c + 1, i)),
        None => ((at, at), (at, i)),
    };
    let starts_ok = |r: (usize, usize)| match b.get(r.0) {
        _ if r.0 == r.1 => false,
        Some(&c) if c < 0x80 => NAME[c as usize] == 1,
        // (a colon is class 4, so it never starts a part)
        _ => text[r.0..].chars().next().is_some_and(is_name_start),
    };
    // A colon first (`:a`) is an XML Name but no QName: an empty prefix binds nothing.
    if colon == Some(at) || (prefix.0 != prefix.1 && !starts_ok(prefix)) || !starts_ok(local) {
        if i >= b.len() {
            return Err(truncated(text));
        }
        return Err(XmlError::other(at, "invalid name"));
    }
    Ok((prefix, local))
}

/// A name that quick-xml delimited as ending at `end` (a tag's, an attribute's) ends at
/// `got`, where its QName ends: what follows must be `what` (a whitespace, `=`).
pub(super) fn name_ends(text: &str, got: usize, end: usize, what: &str) -> Result<()> {
    if got == end {
        Ok(())
    } else {
        Err(unexpected(text, got, what))
    }
}

/// The QName at `at` that quick-xml delimited as ending at `end`.
pub(super) fn whole_qname(
    text: &str,
    at: usize,
    end: usize,
    what: &str,
) -> Result<((usize, usize), (usize, usize))> {
    let (prefix, local) = qname(text, at)?;
    name_ends(text, local.1, end, what)?;
    Ok((prefix, local))
}

/// Does a Name start at `at` (a processing instruction's target)?
pub(super) fn name_starts_at(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_some_and(is_name_start)
}

fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_name_start) && cs.all(is_name_char)
}

/// The character a reference stands for; `body` is what is between `&` and `;`, `at` the
/// offset of the `&`. Character references must name an XML character; of the named
/// entities only XML's five are defined (there is no DTD to declare more).
pub(super) fn reference(body: &str, at: usize) -> Result<char> {
    let malformed = || XmlError::other(at, "malformed entity reference");
    if let Some(number) = body.strip_prefix('#') {
        // quick-xml reads the number (`&#N;`, `&#xH;`, no sign, not 0, a Unicode scalar
        // value); XML allows only its characters.
        let digits = number.strip_prefix('x').unwrap_or(number);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        return match BytesRef::new(body).resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(malformed()),
        };
    }
    match resolve_xml_entity(body) {
        Some(s) => Ok(s.chars().next().expect("an entity stands for a character")),
        None if is_name(body) => Err(XmlError::other(
            at,
            format!("unknown entity reference '{body}'"),
        )),
        None => Err(malformed()),
    }
}

/// Checks every reference in `start..end` (an attribute value).
pub(super) fn references(text: &str, start: usize, end: usize) -> Result<()> {
    let b = &text.as_bytes()[..end];
    for i in memchr::memchr_iter(b'&', &b[start..]) {
        let at = start + i;
        match memchr::memchr2(b';', b'&', &b[at + 1..]) {
            Some(j) if b[at + 1 + j] == b';' => {
                reference(&text[at + 1..at + 1 + j], at)?;
            }
            _ => return Err(XmlError::other(at, "malformed entity reference")),
        }
    }
    Ok(())
}

/// `]]>` is not allowed in character data.
pub(super) fn char_data(text: &str, start: usize, end: usize) -> Result<()> {
    let b = &text.as_bytes()[start..end];
    for i in memchr::memchr_iter(b']', b) {
        if b[i..].starts_with(b"]]>") {
            return Err(XmlError::other(
                start + i,
                "']]>' is not allowed in character data",
            ));
        }
    }
    Ok(())
}

/// `<?xml version=… encoding=… standalone=…?>` at `at` (which starts with `<?xml `); the
/// offset after it. quick-xml would end it at the first `?>`, also one inside a quoted
/// value, so it is read here. Values are not interpreted; as lenient as roxmltree (a
/// pseudo-attribute is any name starting with the keyword).
pub(super) fn declaration(text: &str, at: usize) -> Result<usize> {
    let b = text.as_bytes();
    let skip = |mut i: usize| {
        while b.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        i
    };
    // Whitespace (or the end `?>`) between pseudo-attributes.
    let spaces = |i: usize| match b.get(i) {
        Some(&c) if is_space(c) => Ok(skip(i)),
        Some(_) if !b[i..].starts_with(b"?>") => Err(unexpected(text, i, "a whitespace")),
        _ => Ok(i),
    };
    let pseudo = |i: usize| -> Result<usize> {
        let (_, local) = qname(text, i)?;
        let i = skip(local.1);
        if b.get(i) != Some(&b'=') {
            return Err(unexpected(text, i, "'='"));
        }
        let i = skip(i + 1);
        let q = match b.get(i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(unexpected(text, i, "a quote")),
        };
        match memchr::memchr2(q, b'<', &b[i + 1..]) {
            None => Err(truncated(text)),
            Some(j) if b[i + 1 + j] == b'<' => Err(XmlError::other(
                i + 1 + j,
                "unescaped '<' in an attribute value",
            )),
            Some(j) => Ok(i + j + 2),
        }
    };
    let mut i = spaces(at + 5)?;
    if !b[i..].starts_with(b"version") {
        return Err(XmlError::other(i, "expected 'version'"));
    }
    i = spaces(pseudo(i)?)?;
    if b[i..].starts_with(b"encoding") {
        i = spaces(pseudo(i)?)?;
    }
    if b[i..].starts_with(b"standalone") {
        i = pseudo(i)?;
    }
    i = skip(i);
    if !b[i..].starts_with(b"?>") {
        return Err(match b.get(i) {
            None => truncated(text),
            Some(_) => XmlError::other(i, "expected '?>'"),
        });
    }
    Ok(i + 2)
}
