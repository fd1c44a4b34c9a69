//! Apply byte-range edits to the original text; everything outside the edits is copied
//! verbatim, which is what makes rewriting lossless.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub text: String,
}

impl Edit {
    pub fn insert(at: usize, text: impl Into<String>) -> Edit {
        Edit {
            range: at..at,
            text: text.into(),
        }
    }
    pub fn remove(range: Range<usize>) -> Edit {
        Edit {
            range,
            text: String::new(),
        }
    }
    pub fn replace(range: Range<usize>, text: impl Into<String>) -> Edit {
        Edit {
            range,
            text: text.into(),
        }
    }
}

/// Apply `edits` (any order; insertions at one point keep their given order).
/// Overlapping edits are a bug in the caller.
pub fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    sort(&mut edits);
    let extra: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = String::with_capacity(text.len() + extra);
    pieces(text, &edits, |p| {
        out.push_str(p);
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("a String takes every piece");
    out
}

/// Put `edits` in the order `pieces` wants them.
pub fn sort(edits: &mut [Edit]) {
    // Stable sort keeps insertion order for edits at the same position.
    edits.sort_by_key(|e| (e.range.start, e.range.end));
}

/// Hand the edited text to `f` piece by piece, so large outputs need not exist whole in
/// memory. `edits` must be sorted (see [`sort`]).
pub fn pieces<E>(
    text: &str,
    edits: &[Edit],
    mut f: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let mut pos = 0;
    for e in edits {
        assert!(
            e.range.start >= pos,
            "overlapping edits at {}..{}",
            e.range.start,
            e.range.end
        );
        f(&text[pos..e.range.start])?;
        f(&e.text)?;
        pos = e.range.end;
    }
    f(&text[pos..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_in_order() {
        let t = "0123456789";
        let out = apply(
            t,
            vec![
                Edit::replace(7..9, "x"),
                Edit::insert(2, "a"),
                Edit::insert(2, "b"),
                Edit::remove(4..6),
            ],
        );
        assert_eq!(out, "01ab236x9");
    }

    #[test]
    #[should_panic(expected = "overlapping")]
    fn overlap_panics() {
        apply("0123", vec![Edit::remove(0..2), Edit::remove(1..3)]);
    }
}
