//! virt-systemd's XML reader (src/xtree: quick-xml's events and our well-formedness checks)
//! against roxmltree, the strict parser it replaced on the hot path: same verdict and same
//! tree on the corpus, the fuzz seeds, every prefix of a corpus document (truncation at each
//! byte), and generated near-XML. And the tree
//! the rewriter parses (only the parts `domain::keep` selects) gives the same results as
//! the whole tree on the corpus.

#[path = "../../../fuzz/laws.rs"]
#[allow(dead_code)]
mod laws;

use proptest::prelude::*;
use std::path::Path;

fn files(dir: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if let Ok(s) = std::fs::read_to_string(&p) {
            out.push(s);
        }
    }
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

#[test]
fn corpus_and_seeds_agree() {
    for dir in [
        "tests/corpus",
        "fuzz/seeds/rewrite",
        "fuzz/regressions/rewrite",
    ] {
        for text in files(dir) {
            laws::parsers_agree(&text);
            laws::partial_tree_suffices(&text);
        }
    }
}

#[test]
fn every_truncation_agrees() {
    for text in files("tests/corpus").iter().take(6) {
        for (i, _) in text.char_indices() {
            laws::parsers_agree(&text[..i]);
        }
    }
}

/// Fragments that hit the parser's rules: names, namespaces, references, comments, PIs,
/// CDATA, declarations, quotes, control characters, U+FFFE.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "<domain>",
        "</domain>",
        "<a>",
        "</a>",
        "<a/>",
        "<b x='1'>",
        "</b>",
        "<p:c xmlns:p='u'>",
        "</p:c>",
        "<q:d/>",
        " xmlns='urn:x'",
        " a='1'",
        " a=\"2\"",
        " b = '&amp;'",
        " c='&#x41;'",
        "&lt;",
        "&gt;",
        "&amp;",
        "&apos;",
        "&quot;",
        "&#65;",
        "&#x0;",
        "&#1114112;",
        "&nbsp;",
        "& ",
        "&#;",
        "<!-- c -->",
        "<!-- a--b -->",
        "<!---->",
        "<?pi data?>",
        "<?xml version='1.0'?>",
        "<?xml ",
        "<![CDATA[x]]>",
        "<![CDATA[]]>",
        "]]>",
        "]]",
        "\r\n",
        "\r",
        "\n",
        "\t",
        " ",
        "text",
        "\u{1}",
        "\u{fffe}",
        "é",
        "<é/>",
        "<1a/>",
        "<a:b:c/>",
        "<xmlns:a/>",
        "<!DOCTYPE d>",
        "<",
        ">",
        "/>",
        "'",
        "\"",
        "=",
        "<a b='<'/>",
        "<a xml:lang='en'/>",
        "<a xmlns:xml='x'/>",
        "<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
        "\u{feff}",
        "<a a='1' a='2'/>",
        "<a p:x='1' xmlns:p='u'/>",
        "<a p:x='1' q:x='2' xmlns:p='u' xmlns:q='u'/>",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn generated_near_xml_agrees(ps in prop::collection::vec(piece(), 0..24)) {
        laws::parsers_agree(&ps.concat());
    }

    #[test]
    fn wrapped_fragments_agree(ps in prop::collection::vec(piece(), 0..16)) {
        laws::parsers_agree(&format!("<domain>{}</domain>", ps.concat()));
    }
}
