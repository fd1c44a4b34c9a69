//! `enable --dry-run` and `disable --dry-run`: the unified diff (the `similar` crate) of
//! libvirt's definition before and after, and whether two definitions mean the same to
//! libvirt.

use virt_systemd_core::xtree::{Document, Node};

/// Unified diff of two texts with `context` lines around each change; empty when equal.
/// Lines keep their ends, so a missing final newline and CRLF show up in the diff.
pub fn unified(a: &str, b: &str, label_a: &str, label_b: &str, context: usize) -> String {
    if a == b {
        return String::new();
    }
    similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .diff_lines(a, b)
        .unified_diff()
        .context_radius(context)
        .header(label_a, label_b)
        .to_string()
}

/// Whether two XML documents mean the same to libvirt: same elements (by namespace URI and
/// local name), same attributes (any order and quoting), same non-blank text; comments,
/// processing instructions and blank text between elements ignored. `enable` uses it to
/// see that re-rendering our record in another quote style than libvirt's serializer
/// chose changes nothing. Read with the core's XML reader (quick-xml, strict checks, no
/// DOCTYPE); unparsable input is never equivalent.
pub fn xml_equivalent(a: &str, b: &str) -> bool {
    let (Ok(da), Ok(db)) = (Document::parse(a), Document::parse(b)) else {
        return false;
    };
    same_element(da.root_element(), db.root_element())
}

fn significant<'a, 'i>(n: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    n.children()
        .filter(|c| c.is_element() || (c.is_text() && !c.text().unwrap_or("").trim().is_empty()))
        .collect()
}

fn same_element(a: Node, b: Node) -> bool {
    if a.tag_name() != b.tag_name() {
        return false;
    }
    let attrs = |n: Node| {
        let mut v: Vec<(Option<String>, String, String)> = n
            .attributes()
            .map(|x| {
                (
                    x.namespace().map(str::to_string),
                    x.name().to_string(),
                    x.value().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    if attrs(a) != attrs(b) {
        return false;
    }
    let (ka, kb) = (significant(a), significant(b));
    ka.len() == kb.len()
        && ka
            .iter()
            .zip(&kb)
            .all(|(x, y)| match (x.is_element(), y.is_element()) {
                (true, true) => same_element(*x, *y),
                (false, false) => x.text() == y.text(),
                _ => false,
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalence() {
        let a = "<domain type='kvm'>\n  <metadata>\n    <v:x xmlns:v='urn:a' k='1' j=\"2\"/>\n  </metadata>\n  <name>n</name>\n</domain>\n";
        let b = "<domain type=\"kvm\"><!-- c --><metadata><w:x j='2' k='1' xmlns:w=\"urn:a\"></w:x></metadata><name>n</name></domain>";
        assert!(xml_equivalent(a, b));
        assert!(!xml_equivalent(a, &b.replace("urn:a", "urn:b")));
        assert!(!xml_equivalent(a, &b.replace("k='1'", "k='2'")));
        assert!(!xml_equivalent(a, &b.replace("<name>n", "<name>m")));
        assert!(!xml_equivalent(a, &b.replace("<name>n</name>", "")));
        assert!(!xml_equivalent(a, "<domain"));
    }
    #[test]
    fn unified_format() {
        let a = "a\nb\nc\nd\ne\nf\ng\nh\ni\n";
        let b = "a\nb\nc\nX\nd\ne\nf\ng\nh\n";
        let d = unified(a, b, "old", "new", 2);
        assert_eq!(
            d,
            "--- old\n+++ new\n@@ -2,4 +2,5 @@\n b\n c\n+X\n d\n e\n@@ -7,3 +8,2 @@\n g\n h\n-i\n"
        );
        assert_eq!(unified(a, a, "x", "y", 3), "");
        let d = unified("x", "x\ny\n", "o", "n", 3);
        assert_eq!(
            d,
            "--- o\n+++ n\n@@ -1 +1,2 @@\n-x\n\\ No newline at end of file\n+x\n+y\n"
        );
        assert_eq!(
            unified("", "a\n", "o", "n", 3),
            "--- o\n+++ n\n@@ -0,0 +1 @@\n+a\n"
        );
    }

    #[test]
    fn minimal_on_scattered_edits() {
        // A 20,000-line definition with three scattered edits: three hunks, one line each.
        let a: String = (0..20000).map(|i| format!("line {i}\n")).collect();
        let mut lines: Vec<String> = a.lines().map(|l| format!("{l}\n")).collect();
        lines.insert(10, "new\n".into());
        lines.remove(15000);
        lines.push("tail\n".into());
        let b: String = lines.concat();
        let d = unified(&a, &b, "o", "n", 0);
        let changed: Vec<&str> = d
            .lines()
            .skip(2)
            .filter(|l| l.starts_with(['+', '-']))
            .collect();
        assert_eq!(changed, ["+new", "-line 14999", "+tail"], "{d}");
        assert_eq!(d.lines().filter(|l| l.starts_with("@@ ")).count(), 3, "{d}");
    }
}
