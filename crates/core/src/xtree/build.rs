//! The tree from quick-xml's events. quick-xml finds the markup (tags, text, references,
//! comments, CDATA, PIs), matches end tags to start tags and checks comments; `check.rs`
//! adds the rest, and this file resolves namespace prefixes and keeps what the policy asks
//! for.
//!
//! Prefixes are resolved here, not by quick-xml's `NsReader`: its resolver keeps a
//! declaration's value undecoded (`xmlns:p='a&amp;b'` binds `a&amp;b`, and the reserved URIs
//! are compared undecoded), reads `xmlns:p=''` as an undeclaration (Namespaces 1.1; 1.0
//! binds `p` to ""), and counts open elements in a `u16` (a 65,536th nested element
//! overflows it).

use super::check::{self, is_space};
use super::{
    AttrData, Document, ErrorKind, Keep, NodeData, NodeType, Place, Str, XmlError, NODES_LIMIT,
    NONE, XMLNS_URI, XML_URI,
};
use quick_xml::errors::{Error as QError, IllFormedError, SyntaxError};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, XmlError>;

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
    /// Length of `scope` before this element's declarations.
    scope_len: usize,
}

struct Builder<'i, 'p> {
    policy: &'p dyn Fn(&Place) -> Keep,
    text: &'i str,
    doc: Document<'i>,
    /// In-scope namespace declarations: (prefix, URI index or NONE); prefix "" is the default.
    scope: Vec<(&'i str, u32)>,
    stack: Vec<Open>,
    pending: Vec<Pending>,
    /// Has the root element started?
    rooted: bool,
}

pub(super) fn build<'i>(text: &'i str, policy: &dyn Fn(&Place) -> Keep) -> Result<Document<'i>> {
    if let Some(at) = check::first_non_xml_char(text.as_bytes()) {
        return Err(check::non_xml_char(text, at));
    }
    let mut b = Builder::new(text, policy);
    // quick-xml starts after the BOM and the XML declaration; `base` maps its offsets back.
    let mut base = if text.starts_with('\u{feff}') { 3 } else { 0 };
    if text[base..].starts_with("<?xml ") {
        base = check::declaration(text, base)?;
    }
    if text[base..].starts_with('\u{feff}') {
        // quick-xml would drop it as a BOM; here it is text before the root.
        return Err(unknown_token(base));
    }
    let mut r = Reader::from_str(&text[base..]);
    r.config_mut().check_comments = true;
    r.config_mut().check_end_names = true;
    loop {
        let start = base + r.buffer_position() as usize;
        if !b.rooted
            && text[start..]
                .trim_start_matches(is_space_char)
                .starts_with("<!DOCTYPE")
        {
            return Err(XmlError {
                pos: text.len() - text[start..].trim_start_matches(is_space_char).len(),
                kind: ErrorKind::Doctype,
            });
        }
        // (matched in place: moving quick-xml's result out first costs more than the rest)
        let ev = r.read_event();
        let end = base + r.buffer_position() as usize;
        match &ev {
            Ok(Event::Start(e)) => b.start_tag(e, start, end, true)?,
            Ok(Event::Empty(e)) => b.start_tag(e, start, end, false)?,
            Ok(Event::End(_)) => b.end_tag(end),
            Ok(Event::Text(_)) => b.text(start, end)?,
            Ok(Event::GeneralRef(_)) => b.reference(start, end)?,
            Ok(Event::CData(_)) => b.cdata(start, end)?,
            Ok(Event::Comment(_)) => b.comment(start, end)?,
            Ok(Event::PI(_) | Event::Decl(_)) => b.pi(start, end)?,
            Ok(Event::DocType(_)) => return Err(b.stray(start)),
            Ok(Event::Eof) => break,
            Err(_) => {
                let at = base + r.error_position() as usize;
                return Err(b.error(ev.unwrap_err(), start, at));
            }
        }
    }
    if !b.stack.is_empty() {
        return Err(check::truncated(text));
    }
    if !b.rooted {
        return Err(XmlError {
            pos: text.len(),
            kind: ErrorKind::NoRoot,
        });
    }
    Ok(b.doc)
}

fn is_space_char(c: char) -> bool {
    c.is_ascii() && is_space(c as u8)
}

fn unknown_token(pos: usize) -> XmlError {
    XmlError {
        pos,
        kind: ErrorKind::UnknownToken,
    }
}

impl<'i, 'p> Builder<'i, 'p> {
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
        Builder {
            policy,
            text,
            doc,
            scope: vec![("xml", 0)],
            stack: Vec::new(),
            pending: Vec::new(),
            rooted: false,
        }
    }

    /// Does content at the current point go into the tree?
    fn keeping(&self) -> bool {
        self.stack.last().map_or(true, |o| o.keep != Keep::Nothing)
    }

    /// Outside the root element only comments, PIs and whitespace may be.
    fn in_root(&self) -> bool {
        !self.stack.is_empty()
    }

    /// Offset of a slice of an event (quick-xml borrows them all from the input).
    fn offset(&self, s: &[u8]) -> usize {
        let at = s.as_ptr() as usize - self.text.as_ptr() as usize;
        debug_assert!(at + s.len() <= self.text.len());
        at
    }

    /// A quick-xml error; `start` is where the event it was reading began, `at` where
    /// quick-xml puts the error (the `<` of the markup, the `&` of a reference).
    fn error(&self, e: QError, start: usize, at: usize) -> XmlError {
        let rest = &self.text.as_bytes()[at.min(self.text.len())..];
        match e {
            QError::IllFormed(IllFormedError::DoubleHyphenInComment) => {
                XmlError::other(start, "comment contains '--'")
            }
            QError::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
                XmlError::other(at, format!("expected '{expected}' tag, not '{found}'"))
            }
            // Markup that XML does not have (`<!x`, a DOCTYPE inside the document), and
            // anything but comments and PIs outside the root element.
            QError::Syntax(SyntaxError::InvalidBangMarkup)
            | QError::IllFormed(IllFormedError::MissingDoctypeName) => self.stray(start),
            QError::Syntax(SyntaxError::UnclosedComment) if !rest.starts_with(b"<!--") => {
                self.stray(at)
            }
            QError::Syntax(SyntaxError::UnclosedCData | SyntaxError::UnclosedDoctype)
                if !self.in_root() || !b"<![CDATA[".starts_with(&rest[..rest.len().min(9)]) =>
            {
                self.stray(at)
            }
            QError::IllFormed(_) if !self.in_root() => self.stray(at),
            // The input ends inside markup.
            QError::Syntax(_) => check::truncated(self.text),
            QError::IllFormed(IllFormedError::UnclosedReference) => {
                XmlError::other(at, "malformed entity reference")
            }
            e => XmlError::other(at, e.to_string()),
        }
    }

    /// Markup at `at` that is out of place: before the root element it is read as the
    /// root's start tag, whose name is then wrong; elsewhere it is an unknown token.
    fn stray(&self, at: usize) -> XmlError {
        if self.rooted || self.text.as_bytes().get(at) != Some(&b'<') {
            unknown_token(at)
        } else {
            XmlError::other(at + 1, "invalid name")
        }
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

    /// A piece of text (character data, a reference, CDATA): merged with a text node right
    /// before it, as XML's data model has one text node between two pieces of markup that
    /// are not text. `raw` is the value's range in the input when it is `value` unchanged.
    fn text_node(
        &mut self,
        start: usize,
        end: usize,
        value: Cow<'i, str>,
        raw: (usize, usize),
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
            Cow::Borrowed(_) => Str::Raw(raw.0 as u32, raw.1 as u32),
            Cow::Owned(s) => {
                self.doc.owned.push(s);
                Str::Owned((self.doc.owned.len() - 1) as u32)
            }
        };
        self.push(NodeType::Text, start, end, v)?;
        Ok(())
    }

    /// Character data (without references: quick-xml reports those on their own).
    fn text(&mut self, start: usize, end: usize) -> Result<()> {
        let raw = &self.text[start..end];
        if !self.in_root() {
            return match raw.bytes().position(|c| !is_space(c)) {
                Some(i) => Err(unknown_token(start + i)),
                None => Ok(()),
            };
        }
        // One pass: `]` may start `]]>`; a CR makes the value differ from the bytes.
        let (mut bracket, mut cr) = (false, false);
        for &c in raw.as_bytes() {
            bracket |= c == b']';
            cr |= c == b'\r';
        }
        if bracket {
            check::char_data(self.text, start, end)?;
        }
        if self.keeping() {
            let value = if cr {
                Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
            } else {
                Cow::Borrowed(raw)
            };
            self.text_node(start, end, value, (start, end))?;
        }
        Ok(())
    }

    /// `&name;` or `&#N;` in character data.
    fn reference(&mut self, start: usize, end: usize) -> Result<()> {
        if !self.in_root() {
            return Err(unknown_token(start));
        }
        let c = check::reference(&self.text[start + 1..end - 1], start)?;
        if self.keeping() {
            self.text_node(start, end, Cow::Owned(c.to_string()), (0, 0))?;
        }
        Ok(())
    }

    fn cdata(&mut self, start: usize, end: usize) -> Result<()> {
        if !self.in_root() {
            return Err(self.stray(start));
        }
        if self.keeping() {
            let (cs, ce) = (start + 9, end - 3);
            let raw = &self.text[cs..ce];
            let value = if raw.contains('\r') {
                Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
            } else {
                Cow::Borrowed(raw)
            };
            self.text_node(start, end, value, (cs, ce))?;
        }
        Ok(())
    }

    fn comment(&mut self, start: usize, end: usize) -> Result<()> {
        if self.keeping() {
            self.push(
                NodeType::Comment,
                start,
                end,
                Str::Raw(start as u32 + 4, end as u32 - 3),
            )?;
        }
        Ok(())
    }

    /// A processing instruction. quick-xml calls any `<?xml…?>` a declaration; only the
    /// first thing in the document is one, and only with a space after `xml`.
    fn pi(&mut self, start: usize, end: usize) -> Result<()> {
        if self.text[start..].starts_with("<?xml ") {
            return Err(XmlError::other(start, "unexpected XML declaration"));
        }
        if !check::name_starts_at(self.text, start + 2) {
            return Err(XmlError::other(start + 2, "invalid name"));
        }
        if self.keeping() {
            self.push(NodeType::PI, start, end, Str::Raw(0, 0))?;
        }
        Ok(())
    }

    /// An attribute's syntax beyond what quick-xml checks: whitespace before it, its
    /// name, no `<` in its value. `key` and `value` are the slices quick-xml found.
    fn attribute_syntax(&self, key: &[u8], value: &[u8]) -> Result<AttrSpan> {
        let ks = self.offset(key);
        let (vs, ve) = (self.offset(value), self.offset(value) + value.len());
        if !is_space(self.text.as_bytes()[ks - 1]) {
            return Err(check::unexpected(self.text, ks, "a whitespace"));
        }
        let (prefix, local) = check::whole_qname(self.text, ks, ks + key.len(), "'='")?;
        // One pass over the value (without branches, so it vectorizes): a `<` is an error;
        // a reference or whitespace other than a space makes the value differ from its bytes.
        let (mut lt, mut special) = (false, false);
        for &c in value {
            lt |= c == b'<';
            special |= matches!(c, b'&' | b'\t' | b'\n' | b'\r');
        }
        if lt {
            let i = memchr::memchr(b'<', value).unwrap_or(0);
            return Err(XmlError::other(
                vs + i,
                "unescaped '<' in an attribute value",
            ));
        }
        Ok(AttrSpan {
            start: ks,
            end: ve + 1,
            prefix,
            local,
            value: (vs, ve),
            special,
        })
    }

    /// An attribute quick-xml could not read (`content` is where the tag's name starts).
    fn attr_error(&self, e: AttrError, content: usize) -> XmlError {
        let (pos, what) = match e {
            AttrError::ExpectedEq(p) => (p, "'='"),
            AttrError::ExpectedValue(p) | AttrError::UnquotedValue(p) => (p, "a quote"),
            AttrError::ExpectedQuote(p, _) | AttrError::Duplicated(p, _) => (p, "a quote"),
        };
        check::unexpected(self.text, content + pos, what)
    }

    /// `<qname attrs…>` or `…/>`; `open` when it has content to read.
    fn start_tag(
        &mut self,
        tag: &BytesStart<'i>,
        start: usize,
        end: usize,
        open: bool,
    ) -> Result<()> {
        if self.rooted && self.stack.is_empty() {
            return Err(unknown_token(start));
        }
        self.rooted = true;
        let name_end = start + 1 + tag.name().as_ref().len();
        let (prefix, local) = check::qname(self.text, start + 1)?;
        if &self.text[prefix.0..prefix.1] == "xmlns" {
            return Err(XmlError::other(
                start + 1,
                "the 'xmlns' prefix must not be used on an element",
            ));
        }
        check::name_ends(self.text, local.1, name_end, "a whitespace")?;
        let scope_len = self.scope.len();
        let keeping = self.keeping();
        self.pending.clear();
        for a in tag.attributes().with_checks(false) {
            let a = a.map_err(|e| self.attr_error(e, start + 1))?;
            let span = self.attribute_syntax(a.key.as_ref(), &a.value)?;
            self.attribute(&a, span, keeping, scope_len)?;
        }
        // Namespace declarations of this element are in scope now; resolve names.
        let ns = self.resolve(prefix, start + 1, true)?;
        let mut pending = std::mem::take(&mut self.pending);
        for i in 0..pending.len() {
            let p = &pending[i];
            let ans = if p.prefix.0 == p.prefix.1 {
                NONE
            } else {
                self.resolve(
                    (p.prefix.0 as usize, p.prefix.1 as usize),
                    p.start as usize,
                    false,
                )?
            };
            let name = |q: &Pending| &self.text[q.local.0 as usize..q.local.1 as usize];
            let same_ns = |q: &Pending| {
                q.ns == ans
                    || (q.ns != NONE && ans != NONE && self.doc.uri(q.ns) == self.doc.uri(ans))
            };
            let dup = pending[..i]
                .iter()
                .any(|q| name(q) == name(p) && same_ns(q));
            if dup {
                return Err(XmlError::other(
                    p.start as usize,
                    format!("attribute '{}' is already defined", name(p)),
                ));
            }
            pending[i].ns = ans;
        }
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
                end,
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
                scope_len,
            });
        } else {
            self.scope.truncate(scope_len);
        }
        Ok(())
    }

    /// One attribute of the start tag being read: a namespace declaration goes into scope,
    /// any other waits in `pending` for its prefix to resolve.
    fn attribute(
        &mut self,
        a: &quick_xml::events::attributes::Attribute<'_>,
        s: AttrSpan,
        keeping: bool,
        tag_scope: usize,
    ) -> Result<()> {
        let text = self.text;
        let pfx = &text[s.prefix.0..s.prefix.1];
        let loc = &text[s.local.0..s.local.1];
        let decl = pfx == "xmlns" || (pfx.is_empty() && loc == "xmlns");
        let value = if !s.special {
            Str::Raw(s.value.0 as u32, s.value.1 as u32)
        } else {
            check::references(text, s.value.0, s.value.1)?;
            if keeping || decl {
                // Entities and character references decoded, whitespace to spaces.
                let v = a
                    .normalized_value_with(
                        quick_xml::XmlVersion::Implicit1_0,
                        1,
                        quick_xml::escape::resolve_xml_entity,
                    )
                    .map_err(|e| XmlError::other(s.value.0, e.to_string()))?;
                self.doc.owned.push(v.into_owned());
                Str::Owned((self.doc.owned.len() - 1) as u32)
            } else {
                Str::Raw(s.value.0 as u32, s.value.1 as u32)
            }
        };
        if decl {
            let prefix = if pfx.is_empty() { "" } else { loc };
            return self.declare(prefix, value, s.start, tag_scope);
        }
        self.pending.push(Pending {
            start: s.start as u32,
            end: s.end as u32,
            value_start: s.value.0 as u32,
            value_end: s.value.1 as u32,
            prefix: (s.prefix.0 as u32, s.prefix.1 as u32),
            local: (s.local.0 as u32, s.local.1 as u32),
            value,
            ns: NONE,
        });
        Ok(())
    }

    /// `xmlns:prefix='uri'` (or `xmlns='uri'` with prefix "") on the element being read.
    fn declare(&mut self, prefix: &'i str, value: Str, at: usize, tag_scope: usize) -> Result<()> {
        let uri: Cow<'i, str> = match value {
            Str::Raw(a, b) => Cow::Borrowed(&self.text[a as usize..b as usize]),
            Str::Owned(i) => Cow::Owned(self.doc.owned[i as usize].clone()),
        };
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
        if self.scope[tag_scope..].iter().any(|(p, _)| *p == prefix) {
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
            self.doc.uris.push(uri);
            (self.doc.uris.len() - 1) as u32
        };
        self.scope.push((prefix, idx));
        Ok(())
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

    /// The end tag of the innermost open element (quick-xml matched the names).
    fn end_tag(&mut self, end: usize) {
        let o = self.stack.pop().expect("quick-xml matches end tags");
        if o.node != NONE {
            self.doc.nodes[o.node as usize].end = end as u32;
        }
        self.scope.truncate(o.scope_len);
    }
}

/// Where an attribute's parts are.
#[derive(Clone, Copy)]
struct AttrSpan {
    start: usize,
    end: usize,
    prefix: (usize, usize),
    local: (usize, usize),
    value: (usize, usize),
    /// The value has references or whitespace other than spaces.
    special: bool,
}
