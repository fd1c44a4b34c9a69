//! A small line diff (Myers' O((N+M)·D) algorithm) and its unified-format output, for
//! `enable --dry-run` and `disable --dry-run`. Our edits touch few lines of a document, so D
//! stays small even on a 1 MiB domain.

/// One line-level operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Line `old` of a equals line `new` of b.
    Keep { old: usize, new: usize },
    /// Line `old` of a is removed.
    Delete { old: usize },
    /// Line `new` of b is inserted.
    Insert { new: usize },
}

/// Split keeping line ends, so a missing final newline and CRLF show up in the diff.
pub fn lines(s: &str) -> Vec<&str> {
    s.split_inclusive('\n').collect()
}

/// Shortest edit script from `a` to `b`.
pub fn diff<T: PartialEq>(a: &[T], b: &[T]) -> Vec<Op> {
    // Common prefix and suffix cost nothing and keep the search small.
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops: Vec<Op> = (0..pre).map(|i| Op::Keep { old: i, new: i }).collect();
    for op in myers(am, bm) {
        ops.push(match op {
            Op::Keep { old, new } => Op::Keep {
                old: old + pre,
                new: new + pre,
            },
            Op::Delete { old } => Op::Delete { old: old + pre },
            Op::Insert { new } => Op::Insert { new: new + pre },
        });
    }
    let (ao, bo) = (a.len() - suf, b.len() - suf);
    ops.extend((0..suf).map(|i| Op::Keep {
        old: ao + i,
        new: bo + i,
    }));
    ops
}

/// Beyond this many edits the texts are unrelated: show the middle as replaced.
const MAX_D: isize = 4000;

fn myers<T: PartialEq>(a: &[T], b: &[T]) -> Vec<Op> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = n + m;
    let off = max + 1;
    let mut v = vec![0isize; 2 * max as usize + 3];
    // trace[d]: the frontier before round d, for diagonals -d-1..=d+1 only (O(D²) memory).
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = false;
    'outer: for d in 0..=max.min(MAX_D) {
        trace.push(v[(off - d - 1) as usize..=(off + d + 1) as usize].to_vec());
        let mut k = -d;
        while k <= d {
            let i = (k + off) as usize;
            let mut x = if k == -d || (k != d && v[i - 1] < v[i + 1]) {
                v[i + 1]
            } else {
                v[i - 1] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[i] = x;
            if x >= n && y >= m {
                found = true;
                break 'outer;
            }
            k += 2;
        }
    }
    if !found {
        let mut ops: Vec<Op> = (0..a.len()).map(|old| Op::Delete { old }).collect();
        ops.extend((0..b.len()).map(|new| Op::Insert { new }));
        return ops;
    }
    // Walk back through the saved frontiers.
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..trace.len() as isize).rev() {
        let f = &trace[d as usize];
        let at = |k: isize| f[(k + d + 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            ops.push(Op::Keep {
                old: x as usize,
                new: y as usize,
            });
        }
        if x == prev_x {
            y -= 1;
            ops.push(Op::Insert { new: y as usize });
        } else {
            x -= 1;
            ops.push(Op::Delete { old: x as usize });
        }
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        ops.push(Op::Keep {
            old: x as usize,
            new: y as usize,
        });
    }
    ops.reverse();
    ops
}

/// Unified diff of two texts with `context` lines around each change; empty when equal.
pub fn unified(a: &str, b: &str, label_a: &str, label_b: &str, context: usize) -> String {
    let (la, lb) = (lines(a), lines(b));
    let ops = diff(&la, &lb);
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Keep { .. }))
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        return String::new();
    }
    // Group changes whose context windows touch into hunks of op indices.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changed {
        let start = c.saturating_sub(context);
        let end = (c + context + 1).min(ops.len());
        match hunks.last_mut() {
            Some(h) if start <= h.1 => h.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    let mut out = format!("--- {label_a}\n+++ {label_b}\n");
    for (s, e) in hunks {
        let hunk = &ops[s..e];
        // Positions where the hunk starts in each file (1-based; 0 for an empty range).
        let old_start = ops[..s]
            .iter()
            .filter(|o| !matches!(o, Op::Insert { .. }))
            .count();
        let new_start = ops[..s]
            .iter()
            .filter(|o| !matches!(o, Op::Delete { .. }))
            .count();
        let old_len = hunk
            .iter()
            .filter(|o| !matches!(o, Op::Insert { .. }))
            .count();
        let new_len = hunk
            .iter()
            .filter(|o| !matches!(o, Op::Delete { .. }))
            .count();
        let pos = |start: usize, len: usize| {
            let first = if len == 0 { start } else { start + 1 };
            if len == 1 {
                format!("{first}")
            } else {
                format!("{first},{len}")
            }
        };
        out += &format!(
            "@@ -{} +{} @@\n",
            pos(old_start, old_len),
            pos(new_start, new_len)
        );
        for o in hunk {
            let (mark, line) = match *o {
                Op::Keep { old, .. } => (' ', la[old]),
                Op::Delete { old } => ('-', la[old]),
                Op::Insert { new } => ('+', lb[new]),
            };
            out.push(mark);
            out += line;
            if !line.ends_with('\n') {
                out += "\n\\ No newline at end of file\n";
            }
        }
    }
    out
}

/// Whether two XML documents mean the same to libvirt: same elements (by namespace URI and
/// local name), same attributes (any order and quoting), same non-blank text; comments,
/// processing instructions and blank text between elements ignored. `enable` uses it to
/// see that re-rendering our record in another quote style than libvirt's serializer
/// chose changes nothing. Unparsable input is never equivalent.
pub fn xml_equivalent(a: &str, b: &str) -> bool {
    let opts = || roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let (Ok(da), Ok(db)) = (
        roxmltree::Document::parse_with_options(a, opts()),
        roxmltree::Document::parse_with_options(b, opts()),
    ) else {
        return false;
    };
    same_element(da.root_element(), db.root_element())
}

fn significant<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    n.children()
        .filter(|c| c.is_element() || (c.is_text() && !c.text().unwrap_or("").trim().is_empty()))
        .collect()
}

fn same_element(a: roxmltree::Node, b: roxmltree::Node) -> bool {
    if a.tag_name() != b.tag_name() {
        return false;
    }
    let attrs = |n: roxmltree::Node| {
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
    use proptest::prelude::*;

    /// Rebuild b from a and the script; check every Keep is a real match.
    fn apply<'a>(a: &[&'a str], b: &[&'a str], ops: &[Op]) -> Vec<&'a str> {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        for o in ops {
            match *o {
                Op::Keep { old, new } => {
                    assert_eq!((old, new), (i, j));
                    assert_eq!(a[old], b[new]);
                    out.push(a[old]);
                    i += 1;
                    j += 1;
                }
                Op::Delete { old } => {
                    assert_eq!(old, i);
                    i += 1;
                }
                Op::Insert { new } => {
                    assert_eq!(new, j);
                    out.push(b[new]);
                    j += 1;
                }
            }
        }
        assert_eq!((i, j), (a.len(), b.len()));
        out
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
        let a: Vec<String> = (0..20000).map(|i| format!("line {i}\n")).collect();
        let mut b = a.clone();
        b.insert(10, "new\n".into());
        b.remove(15000);
        b.push("tail\n".into());
        let ops = diff(&a, &b);
        let edits = ops.iter().filter(|o| !matches!(o, Op::Keep { .. })).count();
        assert_eq!(edits, 3);
    }

    proptest! {
        #[test]
        fn script_rebuilds_b(a in proptest::collection::vec("[abc]", 0..30),
                             b in proptest::collection::vec("[abc]", 0..30)) {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let b: Vec<&str> = b.iter().map(String::as_str).collect();
            let ops = diff(&a, &b);
            prop_assert_eq!(apply(&a, &b, &ops), b.clone());
        }
    }
}
