//! Small text helpers for working on XML as bytes: escaping, positions, layout.

/// Is `c` allowed in an XML 1.0 document (the `Char` production)?
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Escape character data for element content. `\r` becomes a character reference because
/// a literal CR would be normalised away by every XML parser, libvirt's included.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escape an attribute value written between `quote` characters.
pub fn escape_attr(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quote == '"' => out.push_str("&quot;"),
            '\'' if quote == '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// 1-based line and column (in characters) of byte offset `pos`.
pub fn line_col(text: &[u8], pos: usize) -> (u32, u32) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count() as u32
        + 1;
    (line, column)
}

/// End (exclusive) of the start tag that begins at `start` (which points at `<`): after
/// its first `>` outside quoted attribute values, as quick-xml's tag reader finds it; the
/// end of `text` when there is none.
pub fn start_tag_end(text: &str, start: usize) -> usize {
    use quick_xml::parser::{ElementParser, Parser};
    match ElementParser::default().feed(&text.as_bytes()[start + 1..]) {
        Some(i) => start + 1 + i + 1,
        None => text.len(),
    }
}

/// Start of the end tag of an element that spans `range` and is not self-closing.
pub fn end_tag_start(text: &str, range: &std::ops::Range<usize>) -> usize {
    text[range.start..range.end]
        .rfind("</")
        .map_or(range.end, |i| range.start + i)
}

/// Whitespace that precedes `pos` on its line, if everything between the previous line
/// break and `pos` is whitespace. Returns (newline, indent) where newline is "\n" or
/// "\r\n"; `None` when `pos` is not the first non-blank thing on its line.
pub fn line_indent(text: &str, pos: usize) -> Option<(&'static str, &str)> {
    let before = &text[..pos];
    let nl = before.rfind('\n')?;
    let indent = &before[nl + 1..];
    if !indent.bytes().all(|b| b == b' ' || b == b'\t') {
        return None;
    }
    let newline = if before[..nl].ends_with('\r') {
        "\r\n"
    } else {
        "\n"
    };
    Some((newline, indent))
}

/// Start of the removable whitespace that precedes an element at `pos`: the last line
/// break (with its CR) and the indentation after it, when only whitespace lies between.
/// This is the inverse of how the renderer inserts (`newline + indent + element`).
pub fn removable_lead(text: &str, pos: usize) -> usize {
    match line_indent(text, pos) {
        Some((nl, indent)) => pos - indent.len() - nl.len(),
        None => pos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_text("a<b>&c\"'\r"), "a&lt;b&gt;&amp;c\"'&#13;");
        assert_eq!(escape_attr("a'b\"c", '\''), "a&apos;b\"c");
        assert_eq!(escape_attr("a'b\"c", '"'), "a'b&quot;c");
    }

    #[test]
    fn positions() {
        let t = "ab\ncdé\nx";
        assert_eq!(line_col(t.as_bytes(), 0), (1, 1));
        assert_eq!(line_col(t.as_bytes(), 4), (2, 2));
        assert_eq!(line_col(t.as_bytes(), t.find('x').unwrap()), (3, 1));
        let s = "<a b='>'>x</a >";
        assert_eq!(start_tag_end(s, 0), 9);
        assert_eq!(end_tag_start(s, &(0..s.len())), 10);
    }

    #[test]
    fn indentation() {
        let t = "<a>\r\n  <b/>\n\t<c/><d/></a>";
        assert_eq!(line_indent(t, t.find("<b").unwrap()), Some(("\r\n", "  ")));
        assert_eq!(line_indent(t, t.find("<c").unwrap()), Some(("\n", "\t")));
        assert_eq!(line_indent(t, t.find("<d").unwrap()), None);
        assert_eq!(removable_lead(t, t.find("<b").unwrap()), 3);
        assert_eq!(
            removable_lead(t, t.find("<d").unwrap()),
            t.find("<d").unwrap()
        );
    }
}
