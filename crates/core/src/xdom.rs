//! A small read-only XML tree for domain documents.
//!
//! Why not roxmltree: on a 1 MiB domain its tree costs ~65 instructions per input byte and
//! ~5 MB, and that was 95 % of a rewrite. This parser checks the same XML 1.0 + Namespaces
//! well-formedness rules (it was written against roxmltree's behaviour, and
//! `tests/xdom_differential.rs` holds the two to agreement), keeps a byte range for every
//! node and attribute so edits splice into the original bytes, skips text with `memchr`, and
//! stores decoded strings only where they differ from the raw bytes.
//!
//! Never supported, by design: a DOCTYPE (so no entity is ever expanded or fetched).

use std::borrow::Cow;
use std::ops::Range;

const NONE: u32 = u32::MAX;
const XML_URI: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_URI: &str = "http://www.w3.org/2000/xmlns/";
/// Same bound roxmltree was given: a hostile input cannot make the tree unbounded.
pub const NODES_LIMIT: usize = 4_000_000;

/// Where and why a document is not well-formed; `pos` is a byte offset into the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub pos: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A `<!DOCTYPE` before the root element.
    Doctype,
    /// No root element at all.
    NoRoot,
    /// The input ended inside markup or with elements still open.
    Truncated,
    /// Something that is not markup where markup must be (text outside the root, a second
    /// root, `<!` that is neither a comment nor CDATA).
    UnknownToken,
    /// Any other violation, described.
    Other(String),
}

impl XmlError {
    fn other(pos: usize, msg: impl Into<String>) -> XmlError {
        XmlError {
            pos,
            kind: ErrorKind::Other(msg.into()),
        }
    }
}

type Result<T> = std::result::Result<T, XmlError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Root,
    Element,
    Text,
    Comment,
    PI,
}

/// A string of the document: raw input bytes, or decoded (entities, line ends) in `owned`.
#[derive(Clone, Copy, Debug)]
enum Str {
    Raw(u32, u32),
    Owned(u32),
}

#[derive(Debug)]
struct NodeData {
    kind: NodeType,
    parent: u32,
    first_child: u32,
    last_child: u32,
    prev_sibling: u32,
    next_sibling: u32,
    start: u32,
    end: u32,
    /// Element: local name; Text/Comment: the value.
    value: Str,
    /// Element: namespace URI index or NONE.
    ns: u32,
    /// Element: its attributes, `attrs[a0..a1]`.
    a0: u32,
    a1: u32,
}

#[derive(Debug)]
struct AttrData {
    start: u32,
    end: u32,
    value_start: u32,
    value_end: u32,
    local: (u32, u32),
    ns: u32,
    value: Str,
}

pub struct Document<'i> {
    text: &'i str,
    nodes: Vec<NodeData>,
    attrs: Vec<AttrData>,
    uris: Vec<Cow<'i, str>>,
    owned: Vec<String>,
}

impl std::fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Document({} nodes)", self.nodes.len())
    }
}

/// What of an element's content goes into the tree. The whole document is checked for
/// well-formedness either way; skipping only saves the nodes nobody will look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Every descendant.
    All,
    /// Texts, comments and PIs; child elements as the policy says for each.
    Select,
    /// Nothing: the element is a leaf in the tree.
    Nothing,
}

/// Where an element is, for a [`Keep`] policy: its depth (the root element is 1), its
/// parent's local name ("" for the root element), its local name and namespace URI.
pub struct Place<'a> {
    pub depth: usize,
    pub parent: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
}

impl<'i> Document<'i> {
    /// The whole document as a tree.
    pub fn parse(text: &'i str) -> Result<Document<'i>> {
        Self::parse_with(text, &|_| Keep::All)
    }

    /// A tree of the parts `policy` selects: it is asked about each element whose parent's
    /// content is `Keep::Select` (and about the root element), and answers for the content
    /// of that element.
    pub fn parse_with(text: &'i str, policy: &dyn Fn(&Place) -> Keep) -> Result<Document<'i>> {
        if text.len() >= NONE as usize {
            return Err(XmlError::other(0, "document is larger than 4 GiB"));
        }
        Parser::new(text, policy).run()
    }

    pub fn root(&self) -> Node<'_, 'i> {
        self.node(0)
    }

    pub fn root_element(&self) -> Node<'_, 'i> {
        self.root()
            .children()
            .find(|n| n.is_element())
            .expect("a parsed document has a root element")
    }

    pub fn get_node(&self, id: NodeId) -> Option<Node<'_, 'i>> {
        (self.nodes.len() > id.0 as usize).then(|| self.node(id.0))
    }

    fn node(&self, i: u32) -> Node<'_, 'i> {
        Node {
            doc: self,
            id: i,
            d: &self.nodes[i as usize],
        }
    }

    fn str(&self, s: Str) -> &str {
        match s {
            Str::Raw(a, b) => &self.text[a as usize..b as usize],
            Str::Owned(i) => &self.owned[i as usize],
        }
    }

    fn uri(&self, i: u32) -> Option<&str> {
        (i != NONE).then(|| &*self.uris[i as usize])
    }
}

#[derive(Clone, Copy)]
pub struct Node<'a, 'i> {
    doc: &'a Document<'i>,
    id: u32,
    d: &'a NodeData,
}

impl PartialEq for Node<'_, '_> {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id && std::ptr::eq(self.doc, o.doc)
    }
}

impl std::fmt::Debug for Node<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}@{:?}", self.d.kind, self.range())
    }
}

/// An element's name: local part and namespace URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpandedName<'a> {
    ns: Option<&'a str>,
    name: &'a str,
}

impl<'a> ExpandedName<'a> {
    pub fn name(&self) -> &'a str {
        self.name
    }
    pub fn namespace(&self) -> Option<&'a str> {
        self.ns
    }
}

impl<'a, 'i> Node<'a, 'i> {
    pub fn id(&self) -> NodeId {
        NodeId(self.id)
    }
    pub fn node_type(&self) -> NodeType {
        self.d.kind
    }
    pub fn is_element(&self) -> bool {
        self.d.kind == NodeType::Element
    }
    pub fn is_text(&self) -> bool {
        self.d.kind == NodeType::Text
    }
    /// The node's bytes in the input: a whole element from `<` to its end tag's `>`.
    pub fn range(&self) -> Range<usize> {
        self.d.start as usize..self.d.end as usize
    }
    /// Empty for anything but an element.
    pub fn tag_name(&self) -> ExpandedName<'a> {
        if self.is_element() {
            ExpandedName {
                ns: self.doc.uri(self.d.ns),
                name: self.doc.str(self.d.value),
            }
        } else {
            ExpandedName { ns: None, name: "" }
        }
    }
    /// Value (decoded) of the namespace-less attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&'a str> {
        self.attributes()
            .find(|a| a.d.ns == NONE && a.name() == name)
            .map(|a| a.value())
    }
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a, 'i>> + 'a {
        let doc = self.doc;
        let (a0, a1) = if self.is_element() {
            (self.d.a0 as usize, self.d.a1 as usize)
        } else {
            (0, 0)
        };
        doc.attrs[a0..a1].iter().map(move |d| Attribute { doc, d })
    }
    /// A text's or comment's value; an element's first child's text, when that is text.
    pub fn text(&self) -> Option<&'a str> {
        match self.d.kind {
            NodeType::Text | NodeType::Comment => Some(self.doc.str(self.d.value)),
            NodeType::Element => self
                .first_child()
                .filter(|c| c.is_text())
                .map(|c| c.doc.str(c.d.value)),
            _ => None,
        }
    }
    pub fn parent(&self) -> Option<Node<'a, 'i>> {
        (self.d.parent != NONE).then(|| self.doc.node(self.d.parent))
    }
    pub fn first_child(&self) -> Option<Node<'a, 'i>> {
        (self.d.first_child != NONE).then(|| self.doc.node(self.d.first_child))
    }
    pub fn children(&self) -> Children<'a, 'i> {
        Children {
            doc: self.doc,
            front: self.d.first_child,
            back: self.d.last_child,
        }
    }
    /// This node, then its parent, up to the root.
    pub fn ancestors(&self) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
        std::iter::successors(Some(*self), |n| n.parent())
    }
}

/// A node's children, from either end.
pub struct Children<'a, 'i> {
    doc: &'a Document<'i>,
    front: u32,
    back: u32,
}

impl<'a, 'i> Iterator for Children<'a, 'i> {
    type Item = Node<'a, 'i>;
    fn next(&mut self) -> Option<Node<'a, 'i>> {
        if self.front == NONE {
            return None;
        }
        let n = self.doc.node(self.front);
        if self.front == self.back {
            self.front = NONE;
            self.back = NONE;
        } else {
            self.front = n.d.next_sibling;
        }
        Some(n)
    }
}

impl DoubleEndedIterator for Children<'_, '_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back == NONE {
            return None;
        }
        let n = self.doc.node(self.back);
        if self.front == self.back {
            self.front = NONE;
            self.back = NONE;
        } else {
            self.back = n.d.prev_sibling;
        }
        Some(n)
    }
}

#[derive(Clone, Copy)]
pub struct Attribute<'a, 'i> {
    doc: &'a Document<'i>,
    d: &'a AttrData,
}

impl<'a> Attribute<'a, '_> {
    pub fn name(&self) -> &'a str {
        &self.doc.text[self.d.local.0 as usize..self.d.local.1 as usize]
    }
    pub fn namespace(&self) -> Option<&'a str> {
        self.doc.uri(self.d.ns)
    }
    /// Decoded and normalized as XML says (entities, whitespace to spaces).
    pub fn value(&self) -> &'a str {
        self.doc.str(self.d.value)
    }
    /// The whole `name='value'`.
    pub fn range(&self) -> Range<usize> {
        self.d.start as usize..self.d.end as usize
    }
    /// The value's raw bytes, between the quotes.
    pub fn range_value(&self) -> Range<usize> {
        self.d.value_start as usize..self.d.value_end as usize
    }
}

// ---------------------------------------------------------------------------------------
// The parser

/// An attribute while its element's start tag is read (namespaces resolve at the end).
struct Pending {
    start: u32,
    end: u32,
    value_start: u32,
    value_end: u32,
    prefix: (u32, u32),
    local: (u32, u32),
    value: Str,
    /// Namespace URI index, once resolved at the end of the start tag.
    ns: u32,
}

struct Open {
    /// NONE when the element is not in the tree (inside a subtree the policy skips).
    node: u32,
    /// What of this element's content goes into the tree.
    keep: Keep,
    /// Local name, for the policy's `parent`.
    local: (u32, u32),
    /// Raw qualified name, compared with the end tag's.
    qname: (u32, u32),
    /// Length of `scope` before this element's declarations.
    scope_len: usize,
}

struct Parser<'i, 'p> {
    policy: &'p dyn Fn(&Place) -> Keep,
    text: &'i str,
    b: &'i [u8],
    pos: usize,
    doc: Document<'i>,
    /// In-scope namespace declarations: (prefix, URI index or NONE); prefix "" is the default.
    scope: Vec<(&'i str, u32)>,
    stack: Vec<Open>,
    pending: Vec<Pending>,
    /// Length of `scope` when the start tag being read began.
    tag_scope: usize,
}

fn is_space(b: u8) -> bool {
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
/// exact, as no production admits them, and lets the parser skip text with `memchr`.
fn first_non_xml_char(b: &[u8]) -> Option<usize> {
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

impl<'i, 'p> Parser<'i, 'p> {
    fn new(text: &'i str, policy: &'p dyn Fn(&Place) -> Keep) -> Self {
        let b = text.as_bytes();
        // Exact upper bounds, so the vectors never grow (a grown vector briefly holds both
        // copies): every node but the root starts at a '<' or is the text right before
        // one, and every attribute has its '='. Untouched capacity costs no memory.
        let lt = memchr::memchr_iter(b'<', b).count();
        let eq = memchr::memchr_iter(b'=', b).count();
        let mut doc = Document {
            text,
            nodes: Vec::with_capacity((2 * lt + 2).min(NODES_LIMIT + 1)),
            attrs: Vec::with_capacity(eq),
            uris: vec![Cow::Borrowed(XML_URI)],
            owned: Vec::new(),
        };
        doc.nodes.push(NodeData {
            kind: NodeType::Root,
            parent: NONE,
            first_child: NONE,
            last_child: NONE,
            prev_sibling: NONE,
            next_sibling: NONE,
            start: 0,
            end: text.len() as u32,
            value: Str::Raw(0, 0),
            ns: NONE,
            a0: 0,
            a1: 0,
        });
        Parser {
            policy,
            text,
            b,
            pos: 0,
            doc,
            scope: vec![("xml", 0)],
            stack: Vec::new(),
            pending: Vec::new(),
            tag_scope: 1,
        }
    }

    fn run(mut self) -> Result<Document<'i>> {
        if let Some(at) = first_non_xml_char(self.b) {
            return Err(self.non_xml_char(at));
        }
        if self.b.starts_with(b"\xEF\xBB\xBF") {
            self.pos = 3;
        }
        if self.starts(b"<?xml ") {
            self.declaration()?;
        }
        self.misc()?;
        if self.starts(b"<!DOCTYPE") {
            return Err(XmlError {
                pos: self.pos,
                kind: ErrorKind::Doctype,
            });
        }
        if self.peek(0) == Some(b'<') && self.start_tag()? {
            self.content()?;
        }
        self.misc()?;
        if self.pos < self.b.len() {
            return Err(XmlError {
                pos: self.pos,
                kind: ErrorKind::UnknownToken,
            });
        }
        if !self.doc.root().children().any(|n| n.is_element()) {
            return Err(XmlError {
                pos: self.b.len(),
                kind: ErrorKind::NoRoot,
            });
        }
        Ok(self.doc)
    }

    /// Does content at the current point go into the tree?
    fn keeping(&self) -> bool {
        self.stack.last().map_or(true, |o| o.keep != Keep::Nothing)
    }

    fn starts(&self, s: &[u8]) -> bool {
        self.b[self.pos..].starts_with(s)
    }

    fn peek(&self, off: usize) -> Option<u8> {
        self.b.get(self.pos + off).copied()
    }

    fn eof(&self) -> XmlError {
        XmlError {
            pos: self.b.len(),
            kind: ErrorKind::Truncated,
        }
    }

    fn skip_spaces(&mut self) {
        while self.pos < self.b.len() && is_space(self.b[self.pos]) {
            self.pos += 1;
        }
    }

    fn expect_byte(&mut self, c: u8) -> Result<()> {
        match self.peek(0) {
            None => Err(self.eof()),
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.unexpected(&format!("'{}'", c as char))),
        }
    }

    fn unexpected(&self, what: &str) -> XmlError {
        let got = self.text[self.pos..].chars().next().unwrap_or(' ');
        XmlError::other(self.pos, format!("expected {what} not '{got}'"))
    }

    /// Comments, PIs and whitespace outside the root element.
    fn misc(&mut self) -> Result<()> {
        loop {
            self.skip_spaces();
            if self.starts(b"<!--") {
                self.comment()?;
            } else if self.starts(b"<?") {
                self.pi()?;
            } else {
                return Ok(());
            }
        }
    }

    /// `<?xml version=… encoding=… standalone=…?>`; values are not interpreted. Exactly
    /// as lenient as roxmltree (a pseudo-attribute is any name starting with the keyword).
    fn declaration(&mut self) -> Result<()> {
        self.pos += 5;
        self.decl_spaces()?;
        if !self.starts(b"version") {
            return Err(XmlError::other(self.pos, "expected 'version'"));
        }
        self.pseudo_attribute()?;
        self.decl_spaces()?;
        if self.starts(b"encoding") {
            self.pseudo_attribute()?;
            self.decl_spaces()?;
        }
        if self.starts(b"standalone") {
            self.pseudo_attribute()?;
        }
        self.skip_spaces();
        if !self.starts(b"?>") {
            return match self.peek(0) {
                None => Err(self.eof()),
                Some(_) => Err(XmlError::other(self.pos, "expected '?>'")),
            };
        }
        self.pos += 2;
        Ok(())
    }

    fn decl_spaces(&mut self) -> Result<()> {
        match self.peek(0) {
            Some(c) if is_space(c) => self.skip_spaces(),
            Some(_) if !self.starts(b"?>") => return Err(self.unexpected("a whitespace")),
            _ => {}
        }
        Ok(())
    }

    fn pseudo_attribute(&mut self) -> Result<()> {
        self.qname()?;
        self.eq()?;
        self.quoted()?;
        Ok(())
    }

    fn eq(&mut self) -> Result<()> {
        self.skip_spaces();
        self.expect_byte(b'=')?;
        self.skip_spaces();
        Ok(())
    }

    /// A quoted value with no `<`; returns its raw range and leaves `pos` after the quote.
    fn quoted(&mut self) -> Result<(usize, usize)> {
        let q = match self.peek(0) {
            None => return Err(self.eof()),
            Some(q @ (b'\'' | b'"')) => q,
            Some(_) => return Err(self.unexpected("a quote")),
        };
        self.pos += 1;
        let vs = self.pos;
        match memchr::memchr2(q, b'<', &self.b[vs..]) {
            None => Err(self.eof()),
            Some(i) => {
                self.pos = vs + i;
                if self.b[self.pos] == b'<' {
                    return Err(XmlError::other(
                        self.pos,
                        "unescaped '<' in an attribute value",
                    ));
                }
                self.pos += 1;
                Ok((vs, vs + i))
            }
        }
    }

    fn non_xml_char(&self, at: usize) -> XmlError {
        let c = self.text[at..].chars().next().unwrap_or('\0');
        XmlError::other(at, format!("a non-XML character {c:?}"))
    }

    /// A Name or QName (`prefix:local`) at `pos`; returns (prefix, local) ranges.
    fn qname(&mut self) -> Result<((usize, usize), (usize, usize))> {
        let start = self.pos;
        let b = self.b;
        let mut i = start;
        let mut colon = None;
        while let Some(&c) = b.get(i) {
            match NAME[c as usize] {
                1 | 2 => i += 1,
                4 => {
                    if colon.is_some() {
                        return Err(XmlError::other(start, "invalid name"));
                    }
                    colon = Some(i);
                    i += 1;
                }
                0 => break,
                _ => {
                    let ch = self.text[i..].chars().next().unwrap_or(' ');
                    if !is_name_char(ch) {
                        break;
                    }
                    i += ch.len_utf8();
                }
            }
        }
        self.pos = i;
        let (prefix, local) = match colon {
            Some(c) => ((start, c), (c + 1, self.pos)),
            None => ((start, start), (start, self.pos)),
        };
        let starts_ok = |r: (usize, usize)| match self.b.get(r.0) {
            _ if r.0 == r.1 => false,
            Some(&c) if c < 0x80 => NAME[c as usize] == 1,
            // (a colon is class 4, so it never starts a part)
            _ => self.text[r.0..].chars().next().is_some_and(is_name_start),
        };
        // A colon first (`:a`) is an XML Name but no QName: an empty prefix binds nothing.
        if colon == Some(start) || (prefix.0 != prefix.1 && !starts_ok(prefix)) || !starts_ok(local)
        {
            if self.pos >= self.b.len() {
                return Err(self.eof());
            }
            return Err(XmlError::other(start, "invalid name"));
        }
        Ok((prefix, local))
    }

    /// A plain Name (PI targets, entity names).
    fn name_at(&self, at: usize) -> Option<usize> {
        let mut it = self.text[at..].char_indices();
        match it.next() {
            Some((_, c)) if is_name_start(c) => {}
            _ => return None,
        }
        for (i, c) in it {
            if !is_name_char(c) {
                return Some(at + i);
            }
        }
        Some(self.b.len())
    }

    fn comment(&mut self) -> Result<()> {
        let start = self.pos;
        let cs = start + 4;
        let Some(end) = find(&self.b[cs..], b"-->").map(|i| cs + i) else {
            return Err(self.eof());
        };
        let body = &self.text[cs..end];
        if body.contains("--") || body.ends_with('-') {
            return Err(XmlError::other(start, "comment contains '--'"));
        }
        self.pos = end + 3;
        if self.keeping() {
            self.push(
                NodeType::Comment,
                start,
                self.pos,
                Str::Raw(cs as u32, end as u32),
            )?;
        }
        Ok(())
    }

    fn pi(&mut self) -> Result<()> {
        let start = self.pos;
        if self.starts(b"<?xml ") {
            return Err(XmlError::other(start, "unexpected XML declaration"));
        }
        let Some(name_end) = self.name_at(start + 2) else {
            if start + 2 >= self.b.len() {
                return Err(self.eof());
            }
            return Err(XmlError::other(start + 2, "invalid name"));
        };
        self.pos = name_end;
        self.skip_spaces();
        let cs = self.pos;
        let Some(end) = find(&self.b[cs..], b"?>").map(|i| cs + i) else {
            return Err(self.eof());
        };
        self.pos = end + 2;
        if self.keeping() {
            self.push(NodeType::PI, start, self.pos, Str::Raw(0, 0))?;
        }
        Ok(())
    }

    fn cdata(&mut self) -> Result<()> {
        let start = self.pos;
        let cs = start + 9;
        let Some(end) = find(&self.b[cs..], b"]]>").map(|i| cs + i) else {
            return Err(self.eof());
        };
        self.pos = end + 3;
        if !self.keeping() {
            return Ok(());
        }
        let raw = &self.text[cs..end];
        let value = if raw.contains('\r') {
            Cow::Owned(normalize_newlines(raw))
        } else {
            Cow::Borrowed(raw)
        };
        self.text_node(start, self.pos, value, cs, end)
    }

    /// Appends a node under the open element (or the root).
    fn push(&mut self, kind: NodeType, start: usize, end: usize, value: Str) -> Result<u32> {
        let id = self.doc.nodes.len();
        if id >= NODES_LIMIT {
            return Err(XmlError::other(start, "too many nodes"));
        }
        let id = id as u32;
        let parent = self.stack.last().map_or(0, |o| o.node);
        let last = self.doc.nodes[parent as usize].last_child;
        if last == NONE {
            self.doc.nodes[parent as usize].first_child = id;
        } else {
            self.doc.nodes[last as usize].next_sibling = id;
        }
        self.doc.nodes[parent as usize].last_child = id;
        self.doc.nodes.push(NodeData {
            kind,
            parent,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            prev_sibling: last,
            start: start as u32,
            end: end as u32,
            value,
            ns: NONE,
            a0: 0,
            a1: 0,
        });
        Ok(id)
    }

    /// A text (or CDATA) piece: merged with a text node right before it, as XML's data
    /// model has one text node between two pieces of markup that are not text.
    fn text_node(
        &mut self,
        start: usize,
        end: usize,
        value: Cow<'i, str>,
        raw_s: usize,
        raw_e: usize,
    ) -> Result<()> {
        let parent = self.stack.last().map_or(0, |o| o.node);
        let last = self.doc.nodes[parent as usize].last_child;
        let mergeable = last != NONE
            && self.doc.nodes[last as usize].kind == NodeType::Text
            && self.doc.nodes[last as usize].end as usize == start;
        if mergeable {
            let prev = self.doc.nodes[last as usize].value;
            let idx = match prev {
                Str::Owned(i) => {
                    self.doc.owned[i as usize].push_str(&value);
                    i
                }
                Str::Raw(..) => {
                    let joined = format!("{}{}", self.doc.str(prev), value);
                    self.doc.owned.push(joined);
                    (self.doc.owned.len() - 1) as u32
                }
            };
            let n = &mut self.doc.nodes[last as usize];
            n.value = Str::Owned(idx);
            n.end = end as u32;
            return Ok(());
        }
        let v = match value {
            Cow::Borrowed(_) => Str::Raw(raw_s as u32, raw_e as u32),
            Cow::Owned(s) => {
                self.doc.owned.push(s);
                Str::Owned((self.doc.owned.len() - 1) as u32)
            }
        };
        self.push(NodeType::Text, start, end, v)?;
        Ok(())
    }

    /// Element content up to the end tag of the element `start_tag` opened.
    fn content(&mut self) -> Result<()> {
        loop {
            // Character data up to the next '<'.
            let s = self.pos;
            let e = memchr::memchr(b'<', &self.b[s..]).map_or(self.b.len(), |i| s + i);
            if e > s {
                if self.keeping() {
                    let value = self.char_data(s, e)?;
                    self.text_node(s, e, value, s, e)?;
                } else {
                    self.check_char_data(s, e)?;
                }
            }
            self.pos = e;
            if e >= self.b.len() {
                return Err(self.eof());
            }
            match self.peek(1) {
                None => return Err(self.eof()),
                Some(b'/') => {
                    self.end_tag()?;
                    if self.stack.is_empty() {
                        return Ok(());
                    }
                }
                Some(b'!') => {
                    if self.starts(b"<!--") {
                        self.comment()?;
                    } else if self.starts(b"<![CDATA[") {
                        self.cdata()?;
                    } else if b"<![CDATA[".starts_with(&self.b[self.pos..])
                        || self.b[self.pos..] == b"<!-"[..]
                    {
                        return Err(self.eof());
                    } else {
                        return Err(XmlError {
                            pos: self.pos,
                            kind: ErrorKind::UnknownToken,
                        });
                    }
                }
                Some(b'?') => self.pi()?,
                Some(_) => {
                    self.start_tag()?;
                }
            }
        }
    }

    /// Checks character data `s..e` (no `]]>`) and decodes it when it has references or
    /// CRs.
    fn char_data(&self, s: usize, e: usize) -> Result<Cow<'i, str>> {
        let raw = &self.text[s..e];
        if !self.check_char_data(s, e)? {
            return Ok(Cow::Borrowed(raw));
        }
        let mut out = String::with_capacity(raw.len());
        self.decode(s, e, &mut out, false)?;
        Ok(Cow::Owned(out))
    }

    /// Checks character data `s..e` without decoding it; true when it has references or
    /// CRs (so its value differs from its bytes).
    fn check_char_data(&self, s: usize, e: usize) -> Result<bool> {
        let bytes = &self.b[s..e];
        let mut special = false;
        for i in memchr::memchr3_iter(b'&', b'\r', b']', bytes) {
            match bytes[i] {
                b'&' => {
                    self.reference(s + i, e)?;
                    special = true;
                }
                b'\r' => special = true,
                _ if bytes[i..].starts_with(b"]]>") => {
                    return Err(XmlError::other(
                        s + i,
                        "']]>' is not allowed in character data",
                    ));
                }
                _ => {}
            }
        }
        Ok(special)
    }

    /// Decodes references in `s..e` into `out`; `attr` normalizes whitespace as attribute
    /// values are (tab, newline, CR to space), else CR and CRLF become a newline.
    /// Characters from character references are kept as they are.
    fn decode(&self, s: usize, e: usize, out: &mut String, attr: bool) -> Result<()> {
        let b = self.b;
        let mut i = s;
        let mut run = s;
        while i < e {
            match b[i] {
                b'&' => {
                    out.push_str(&self.text[run..i]);
                    let (c, next) = self.reference(i, e)?;
                    out.push(c);
                    i = next;
                    run = i;
                }
                b'\r' => {
                    out.push_str(&self.text[run..i]);
                    out.push(if attr { ' ' } else { '\n' });
                    i += if b.get(i + 1) == Some(&b'\n') && i + 1 < e {
                        2
                    } else {
                        1
                    };
                    run = i;
                }
                b'\t' | b'\n' if attr => {
                    out.push_str(&self.text[run..i]);
                    out.push(' ');
                    i += 1;
                    run = i;
                }
                _ => i += 1,
            }
        }
        out.push_str(&self.text[run..e]);
        Ok(())
    }

    /// A reference at `at` (`&`), ending before `e`: the character and the offset after `;`.
    fn reference(&self, at: usize, e: usize) -> Result<(char, usize)> {
        let malformed = || XmlError::other(at, "malformed entity reference");
        let b = &self.b[..e];
        let semi = memchr::memchr(b';', &b[at..]).map(|i| at + i);
        if b.get(at + 1) == Some(&b'#') {
            let (digits, radix) = if b.get(at + 2) == Some(&b'x') {
                (at + 3, 16)
            } else {
                (at + 2, 10)
            };
            let mut j = digits;
            while j < e
                && (if radix == 16 {
                    b[j].is_ascii_hexdigit()
                } else {
                    b[j].is_ascii_digit()
                })
            {
                j += 1;
            }
            if j >= e || b[j] != b';' {
                return Err(malformed());
            }
            let c = u32::from_str_radix(&self.text[digits..j], radix)
                .ok()
                .and_then(char::from_u32)
                .filter(|c| is_xml_char(*c))
                .ok_or_else(malformed)?;
            return Ok((c, j + 1));
        }
        let name_end = self
            .name_at(at + 1)
            .filter(|&n| n <= e)
            .ok_or_else(malformed)?;
        if semi != Some(name_end) {
            return Err(malformed());
        }
        let c = match &self.text[at + 1..name_end] {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            other => {
                return Err(XmlError::other(
                    at,
                    format!("unknown entity reference '{other}'"),
                ))
            }
        };
        Ok((c, name_end + 1))
    }

    /// `<qname attrs…>` or `…/>`; true when the element is open (has content to read).
    fn start_tag(&mut self) -> Result<bool> {
        let start = self.pos;
        self.pos += 1;
        let (prefix, local) = self.qname()?;
        if &self.text[prefix.0..prefix.1] == "xmlns" {
            return Err(XmlError::other(
                start + 1,
                "the 'xmlns' prefix must not be used on an element",
            ));
        }
        let scope_len = self.scope.len();
        self.tag_scope = scope_len;
        self.pending.clear();
        let open = loop {
            let had_space = self.peek(0).is_some_and(is_space);
            self.skip_spaces();
            match self.peek(0) {
                None => return Err(self.eof()),
                Some(b'/') => {
                    self.pos += 1;
                    self.expect_byte(b'>')?;
                    break false;
                }
                Some(b'>') => {
                    self.pos += 1;
                    break true;
                }
                Some(_) => {
                    if !had_space {
                        return Err(self.unexpected("a whitespace"));
                    }
                    self.attribute()?;
                }
            }
        };
        // Namespace declarations of this element are in scope now; resolve names.
        let ns = self.resolve(prefix, start + 1, true)?;
        let mut pending = std::mem::take(&mut self.pending);
        for i in 0..pending.len() {
            let p = &pending[i];
            let ans = self.resolve(
                (p.prefix.0 as usize, p.prefix.1 as usize),
                p.start as usize,
                false,
            )?;
            let name = |q: &Pending| &self.b[q.local.0 as usize..q.local.1 as usize];
            let dup = pending[..i]
                .iter()
                .any(|q| name(q) == name(p) && self.doc.uri(q.ns) == self.doc.uri(ans));
            if dup {
                let local_s = &self.text[p.local.0 as usize..p.local.1 as usize];
                return Err(XmlError::other(
                    p.start as usize,
                    format!("attribute '{local_s}' is already defined"),
                ));
            }
            pending[i].ns = ans;
        }
        let keeping = self.keeping();
        let mut id = NONE;
        if keeping {
            let a0 = self.doc.attrs.len() as u32;
            self.doc.attrs.extend(pending.iter().map(|p| AttrData {
                start: p.start,
                end: p.end,
                value_start: p.value_start,
                value_end: p.value_end,
                local: p.local,
                ns: p.ns,
                value: p.value,
            }));
            let a1 = self.doc.attrs.len() as u32;
            id = self.push(
                NodeType::Element,
                start,
                self.pos,
                Str::Raw(local.0 as u32, local.1 as u32),
            )?;
            let n = &mut self.doc.nodes[id as usize];
            n.ns = ns;
            n.a0 = a0;
            n.a1 = a1;
        }
        self.pending = pending;
        if open {
            let keep = match self.stack.last() {
                _ if !keeping => Keep::Nothing,
                Some(o) if o.keep == Keep::All => Keep::All,
                parent => (self.policy)(&Place {
                    depth: self.stack.len() + 1,
                    parent: parent
                        .map_or("", |o| &self.text[o.local.0 as usize..o.local.1 as usize]),
                    name: &self.text[local.0..local.1],
                    namespace: self.doc.uri(ns),
                }),
            };
            self.stack.push(Open {
                node: id,
                keep,
                local: (local.0 as u32, local.1 as u32),
                qname: (start as u32 + 1, local.1 as u32),
                scope_len,
            });
        } else {
            self.scope.truncate(scope_len);
        }
        Ok(open)
    }

    /// The URI index bound to the prefix at `p` (the default namespace for an element's
    /// empty prefix; none for an attribute's).
    fn resolve(&self, p: (usize, usize), at: usize, element: bool) -> Result<u32> {
        let prefix = &self.text[p.0..p.1];
        if prefix.is_empty() && !element {
            return Ok(NONE);
        }
        match self.scope.iter().rev().find(|(pf, _)| *pf == prefix) {
            Some(&(_, uri)) => Ok(uri),
            None if prefix.is_empty() => Ok(NONE),
            None => Err(XmlError::other(
                at,
                format!("an unknown namespace prefix '{prefix}'"),
            )),
        }
    }

    fn attribute(&mut self) -> Result<()> {
        let start = self.pos;
        let (prefix, local) = self.qname()?;
        self.eq()?;
        let (vs, ve) = self.quoted()?;
        let raw = &self.b[vs..ve];
        let pfx = &self.text[prefix.0..prefix.1];
        let loc = &self.text[local.0..local.1];
        let decl = pfx == "xmlns" || (pfx.is_empty() && loc == "xmlns");
        let value = if !raw
            .iter()
            .any(|&c| matches!(c, b'&' | b'\t' | b'\n' | b'\r'))
        {
            Str::Raw(vs as u32, ve as u32)
        } else if self.keeping() || decl {
            let mut s = String::with_capacity(raw.len());
            self.decode(vs, ve, &mut s, true)?;
            self.doc.owned.push(s);
            Str::Owned((self.doc.owned.len() - 1) as u32)
        } else {
            for i in memchr::memchr_iter(b'&', raw) {
                self.reference(vs + i, ve)?;
            }
            Str::Raw(vs as u32, ve as u32)
        };
        if decl {
            let uri = self.doc.str(value).to_string();
            return self.declare(if pfx.is_empty() { "" } else { loc }, uri, value, start);
        }
        self.pending.push(Pending {
            start: start as u32,
            end: self.pos as u32,
            value_start: vs as u32,
            value_end: ve as u32,
            prefix: (prefix.0 as u32, prefix.1 as u32),
            local: (local.0 as u32, local.1 as u32),
            value,
            ns: NONE,
        });
        Ok(())
    }

    /// `xmlns:prefix='uri'` (or `xmlns='uri'` with prefix "") on the element being read.
    fn declare(&mut self, prefix: &'i str, uri: String, value: Str, at: usize) -> Result<()> {
        let bad = |m: &str| Err(XmlError::other(at, m.to_string()));
        if uri == XMLNS_URI {
            return bad("the 'xmlns' namespace URI must not be declared");
        }
        let is_xml = uri == XML_URI;
        if prefix == "xml" {
            if !is_xml {
                return bad("the 'xml' prefix is bound to a different URI");
            }
        } else if is_xml {
            return bad("the 'xml' namespace URI is bound to a prefix other than 'xml'");
        }
        if self.scope[self.tag_scope..]
            .iter()
            .any(|(p, _)| *p == prefix)
        {
            return Err(XmlError::other(
                at,
                if prefix.is_empty() {
                    "attribute 'xmlns' is already defined".to_string()
                } else {
                    format!("namespace '{prefix}' is already defined")
                },
            ));
        }
        if is_xml {
            return Ok(());
        }
        let idx = if prefix.is_empty() && uri.is_empty() {
            // xmlns="" takes the default namespace away.
            NONE
        } else {
            self.doc.uris.push(match value {
                Str::Raw(a, b) => Cow::Borrowed(&self.text[a as usize..b as usize]),
                Str::Owned(_) => Cow::Owned(uri),
            });
            (self.doc.uris.len() - 1) as u32
        };
        self.scope.push((prefix, idx));
        Ok(())
    }

    /// `</qname>` of the innermost open element.
    fn end_tag(&mut self) -> Result<()> {
        let start = self.pos;
        self.pos += 2;
        // Fast path: the open element's name, then something that cannot continue a name.
        if let Some(o) = self.stack.last() {
            let want = &self.b[o.qname.0 as usize..o.qname.1 as usize];
            let after = self.pos + want.len();
            if self.b[self.pos..].starts_with(want)
                && self.b.get(after).is_some_and(|&c| NAME[c as usize] == 0)
            {
                self.pos = after;
                self.skip_spaces();
                self.expect_byte(b'>')?;
                let o = self.stack.pop().expect("checked above");
                if o.node != NONE {
                    self.doc.nodes[o.node as usize].end = self.pos as u32;
                }
                self.scope.truncate(o.scope_len);
                return Ok(());
            }
        }
        let (prefix, local) = self.qname()?;
        self.skip_spaces();
        self.expect_byte(b'>')?;
        let got = &self.text[if prefix.0 == prefix.1 {
            local.0
        } else {
            prefix.0
        }..local.1];
        let Some(o) = self.stack.pop() else {
            return Err(XmlError {
                pos: start,
                kind: ErrorKind::UnknownToken,
            });
        };
        let want = &self.text[o.qname.0 as usize..o.qname.1 as usize];
        if want != got {
            return Err(XmlError::other(
                start,
                format!("expected '{want}' tag, not '{got}'"),
            ));
        }
        if o.node != NONE {
            self.doc.nodes[o.node as usize].end = self.pos as u32;
        }
        self.scope.truncate(o.scope_len);
        Ok(())
    }
}

fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_devices(p: &Place) -> Keep {
        if p.depth == 1 {
            Keep::Select
        } else if p.name == "devices" {
            Keep::Nothing
        } else {
            Keep::All
        }
    }

    #[test]
    fn skipped_subtrees_are_checked_but_not_kept() {
        let x = "<domain><name>n</name><devices><disk a='1'><x>&amp;</x></disk></devices></domain>";
        let d = Document::parse_with(x, &skip_devices).unwrap();
        let dev = d.root_element().children().nth(1).unwrap();
        assert_eq!(dev.tag_name().name(), "devices");
        assert_eq!(
            dev.range(),
            x.find("<devices>").unwrap()..x.find("</domain>").unwrap()
        );
        assert_eq!(dev.children().count(), 0);
        assert_eq!(
            d.root_element().children().next().unwrap().text(),
            Some("n")
        );
        for bad in [
            "<domain><devices><disk a='1' a='2'/></devices></domain>",
            "<domain><devices><disk>&nbsp;</disk></devices></domain>",
            "<domain><devices><p:disk/></devices></domain>",
            "<domain><devices><disk></disc></devices></domain>",
            "<domain><devices><!-- a -- b --></devices></domain>",
        ] {
            let whole = Document::parse(bad).unwrap_err();
            let part = Document::parse_with(bad, &skip_devices).unwrap_err();
            assert_eq!(whole, part, "{bad}");
        }
    }

    #[test]
    fn texts_attributes_and_ranges() {
        let x = "<?xml version='1.0'?>\r\n<d xmlns:p='urn:p' a=\"x&lt;\ty\"><p:e/>a\r\nb<![CDATA[<c>]]>&#13;</d>";
        let d = Document::parse(x).unwrap();
        let r = d.root_element();
        assert_eq!(r.attribute("a"), Some("x< y"));
        let a = r.attributes().next().unwrap();
        assert_eq!(&x[a.range()], "a=\"x&lt;\ty\"");
        assert_eq!(&x[a.range_value()], "x&lt;\ty");
        let kids: Vec<_> = r.children().collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].tag_name().namespace(), Some("urn:p"));
        assert_eq!(kids[1].text(), Some("a\nb<c>\r"));
        assert_eq!(&x[kids[1].range()], "a\r\nb<![CDATA[<c>]]>&#13;");
        assert_eq!(r.children().next_back().unwrap(), kids[1]);
    }

    #[test]
    fn errors_name_their_place() {
        let e = |x: &str| Document::parse(x).unwrap_err();
        assert_eq!(e("<a>\u{1}</a>").pos, 3);
        assert_eq!(
            e("<a><b></a>").kind,
            ErrorKind::Other("expected 'b' tag, not 'a'".into())
        );
        assert_eq!(e("<a/><b/>").kind, ErrorKind::UnknownToken);
        assert_eq!(e("<!DOCTYPE a><a/>").kind, ErrorKind::Doctype);
        assert_eq!(e("<a>").kind, ErrorKind::Truncated);
        assert_eq!(e("").kind, ErrorKind::NoRoot);
        assert_eq!(e("<a>]]></a>").pos, 3);
    }
}
