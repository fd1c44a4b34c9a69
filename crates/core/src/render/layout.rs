//! Where and how to insert: indentation, line breaks and quote style of the target
//! document, so inserted text looks like its neighbours — and so removal (the element
//! plus the line break and indentation before it) is the exact inverse of insertion.

use super::splice::Edit;
use crate::xmltext::{end_tag_start, line_indent, start_tag_end};
use crate::xtree::Node;

/// Document-wide style.
pub struct Style {
    /// Line break ("\n", "\r\n"), or "" for a document written on one line.
    pub nl: &'static str,
    /// One level of indentation.
    pub unit: String,
    /// Quote character used on the root element's attributes.
    pub q: char,
}

impl Style {
    pub fn detect(text: &str, root: Node) -> Style {
        let q = root
            .attributes()
            .next()
            .and_then(|a| text[a.range()].chars().last())
            .unwrap_or('\'');
        let first = root.children().find(|c| c.is_element());
        match first.and_then(|c| line_indent(text, c.range().start)) {
            Some((nl, ind)) => {
                let root_ind = line_indent(text, root.range().start).map_or("", |x| x.1);
                let unit = ind.strip_prefix(root_ind).unwrap_or(ind);
                let unit = if unit.is_empty() { "  " } else { unit };
                Style {
                    nl,
                    unit: unit.to_string(),
                    q,
                }
            }
            None if first.is_some() => Style {
                nl: "",
                unit: String::new(),
                q,
            },
            // A root without children: pick libvirt's own layout.
            None => Style {
                nl: if text.contains("\r\n") { "\r\n" } else { "\n" },
                unit: "  ".into(),
                q,
            },
        }
    }

    /// Indentation of `n`'s own line ("" when not at the start of a line).
    pub fn indent_of<'t>(&self, text: &'t str, n: Node) -> &'t str {
        if self.nl.is_empty() {
            return "";
        }
        line_indent(text, n.range().start).map_or("", |x| x.1)
    }

    /// Indentation for children of `parent`: that of its last child on its own line, else
    /// the parent's plus one unit.
    pub fn child_indent(&self, text: &str, parent: Node) -> String {
        self.child_indent_skipping(text, parent, &[])
    }

    /// Like [`Style::child_indent`], ignoring children this rewrite removes.
    pub fn child_indent_skipping(
        &self,
        text: &str,
        parent: Node,
        removed: &[crate::xtree::NodeId],
    ) -> String {
        if self.nl.is_empty() {
            return String::new();
        }
        let kid = parent
            .children()
            .filter(|c| c.is_element() && !removed.contains(&c.id()))
            .filter_map(|c| line_indent(text, c.range().start))
            .next_back();
        match kid {
            Some((_, ind)) => ind.to_string(),
            None => format!("{}{}", self.indent_of(text, parent), self.unit),
        }
    }

    /// Fill a template: `{q}` and lines re-indented from `indent` (two template spaces
    /// = one unit).
    pub fn template(&self, tpl: &str, indent: &str, vars: &[(&str, &str)]) -> String {
        let s = tpl
            .trim_end_matches('\n')
            .replace("{q}", &self.q.to_string());
        let mut out = String::with_capacity(s.len() + 16);
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                out.push_str(self.nl);
                let body = line.trim_start_matches(' ');
                let levels = (line.len() - body.len()) / 2;
                if !self.nl.is_empty() {
                    out.push_str(indent);
                    out.push_str(&self.unit.repeat(levels));
                }
                out.push_str(body);
            } else {
                out.push_str(line);
            }
        }
        // Values last: their own line breaks are content, not layout.
        for (k, v) in vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    /// `elements` laid out as children at `indent`: each preceded by a line break and the
    /// indentation (nothing in one-line documents).
    pub fn lines(&self, indent: &str, elements: &[String]) -> String {
        let mut s = String::new();
        for e in elements {
            if !self.nl.is_empty() {
                s.push_str(self.nl);
                s.push_str(indent);
            }
            s.push_str(e);
        }
        s
    }

    /// An element with children: `open`, the children one level in, `close`.
    pub fn wrap(&self, indent: &str, open: &str, kids: &[String], close: &str) -> String {
        let inner = format!("{indent}{}", self.unit);
        let mut s = String::from(open);
        s += &self.lines(&inner, kids);
        if !self.nl.is_empty() {
            s.push_str(self.nl);
            s.push_str(indent);
        }
        s.push_str(close);
        s
    }
}

/// Edits that append `kids` (already rendered for `indent`) as last children of `parent`.
/// A self-closing parent is opened (`<x/>` → `<x>…</x>`); returns whether it was.
pub fn append_children(
    text: &str,
    style: &Style,
    parent: Node,
    indent: &str,
    kids: &[String],
) -> (Vec<Edit>, bool) {
    append_children_skipping(text, style, parent, indent, kids, &[])
}

/// Like [`append_children`], for a parent some of whose children the same rewrite removes
/// (`--force`): they do not count as the last child, so the result does not depend on them.
pub fn append_children_skipping(
    text: &str,
    style: &Style,
    parent: Node,
    indent: &str,
    kids: &[String],
    removed: &[crate::xtree::NodeId],
) -> (Vec<Edit>, bool) {
    let r = parent.range();
    let ste = start_tag_end(text, r.start);
    let self_closing = ste == r.end && text[..ste].ends_with("/>");
    let body = style.lines(indent, kids);
    if self_closing {
        let qname = &text[r.start + 1..]
            .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .next()
            .unwrap_or("");
        let mut closing = body;
        if !style.nl.is_empty() {
            closing.push_str(style.nl);
            closing.push_str(style.indent_of(text, parent));
        }
        closing += &format!("</{qname}>");
        return (
            // One edit over "/>": an insertion at the tag's end (a sibling inserted before
            // the next element) must land after our closing tag, not inside the element.
            vec![Edit::replace(ste - 2..ste, format!(">{closing}"))],
            true,
        );
    }
    let at = parent
        .children()
        .rfind(|c| c.is_element() && !removed.contains(&c.id()))
        .map_or(ste, |c| c.range().end);
    (vec![Edit::insert(at, body)], false)
}

/// Insert `element` right after `sibling`, on its own line at the parent's child
/// indentation (not the sibling's: it may share a line with something else, and what we
/// insert must not change how the next run lays things out).
pub fn insert_after(text: &str, style: &Style, sibling: Node, element: &str) -> Edit {
    let ind = sibling
        .parent()
        .map_or(String::new(), |p| style.child_indent(text, p));
    Edit::insert(
        sibling.range().end,
        style.lines(&ind, &[element.to_string()]),
    )
}

/// Insert `element` right before `sibling`. When `sibling` starts its line, the element
/// takes over that line break and indentation and `sibling` gets a fresh one: exactly what
/// removal (the element and the line break before it) undoes.
pub fn insert_before(text: &str, _style: &Style, sibling: Node, element: &str) -> Edit {
    let mut s = element.to_string();
    if let Some((nl, ind)) = line_indent(text, sibling.range().start) {
        s.push_str(nl);
        s.push_str(ind);
    }
    Edit::insert(sibling.range().start, s)
}

/// Range of an element's content (between its tags); empty at the tag end when
/// self-closing.
pub fn content_range(text: &str, n: Node) -> std::ops::Range<usize> {
    let r = n.range();
    let ste = start_tag_end(text, r.start);
    if ste == r.end {
        return ste..ste;
    }
    ste..end_tag_start(text, &r)
}
