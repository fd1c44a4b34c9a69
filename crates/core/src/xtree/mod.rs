//! A small read-only XML tree for domain documents, built from quick-xml's events.
//!
//! Why quick-xml and not a parser of our own: reading XML is quick-xml's job, it reads at
//! memory speed and borrows every event from the input, so its byte positions
//! (`Reader::buffer_position`) are what splicing edits into the original bytes needs. What
//! it leaves to its user is here, as small checks on its events (`check.rs`): XML character
//! ranges, name characters, attribute syntax and duplicates, namespace prefixes, references,
//! `]]>` in text, one root, and no DOCTYPE (so no entity is ever expanded or fetched). With
//! them the verdicts are those of a strict XML 1.0 + Namespaces parser:
//! `tests/xdom_differential.rs` holds them to roxmltree's. Why not roxmltree at run time: on a
//! 1 MiB domain its tree costs ~65 instructions per input byte and ~5 MB, and that was 95 %
//! of a rewrite.
//!
//! The tree keeps a byte range for every node and attribute, stores decoded strings only
//! where they differ from the raw bytes, and, through a [`Keep`] policy, only the parts its
//! caller reads (the whole document is checked either way).

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
    pub(crate) fn other(pos: usize, msg: impl Into<String>) -> XmlError {
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
        build::build(text, policy)
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

mod build;
mod check;

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
