//! The rewrite laws the fuzz target checks, shared with `tests/fuzz_regressions.rs` (which
//! replays the inputs the fuzzer once broke) through `#[path]`, so both check the same.
//!
//! Law 0, on every input: virt-systemd's XML reader (`xtree`: quick-xml and our checks) and
//! roxmltree agree —
//! both accept or both reject, and when both accept they see the same tree.
//!
//! Law 0b, on every input: `rewrite`, `strip` and the domain facts come out the same
//! whether the parser keeps the whole tree or only the parts `domain::keep` selects.
//!
//! Laws checked whenever `rewrite` accepts the input (errors are fine, panics are not):
//! 1. the output is well-formed XML (xtree and roxmltree parse it, as law 0 qualifies);
//! 2. rewriting the output again with the same request gives the same bytes;
//! 3. `strip(Full)` of the output succeeds and leaves no virt-systemd record behind;
//!    when the input had no record of ours, it gives back exactly the input bytes (unless
//!    `--force` replaced a hand-written entry, which is gone for good by design).
//!
//! Three requests are tried on every input: a realistic flag set (hostname, machine ID, SSH
//! key, text credentials with characters to escape, a fw_cfg secret credential, kernel
//! command line), the bare defaults (vsock + notify only), and the full set with `--force`.

use virt_systemd_core::config::RewriteDefaults;
use virt_systemd_core::credential::{Credential, Value};
use virt_systemd_core::domain::{self, DomainXml};
use virt_systemd_core::intent::Request;
use virt_systemd_core::metadata;
use virt_systemd_core::render::{self, strip::Mode};

fn new_uuid() -> String {
    "6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f".to_string()
}

fn full_request() -> Request {
    let text = |name: &str, v: &str| Credential {
        name: name.into(),
        value: Value::Text(v.into()),
    };
    Request {
        hostname: Some("web-01".into()),
        machine_id: Some(true),
        ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx3lB1dyZxU4o8Zq1hYtKj2 a@b".into()],
        credentials: vec![
            text("firstboot.locale", "C.UTF-8"),
            text("x.quoting", "a<b & c>'d\" ,, e"),
            Credential {
                name: "secret.token".into(),
                value: Value::File("/etc/virt-systemd/tok&en".into()),
            },
        ],
        kernel_cmdline: vec!["console=ttyS0 quiet".into()],
        ..Request::default()
    }
}

fn has_record(text: &str) -> bool {
    DomainXml::parse(text)
        .ok()
        .is_some_and(|d| !matches!(metadata::read(&d), Ok(None)))
}

fn check(input: &str, req: &Request) {
    let defaults = RewriteDefaults::default();
    let Ok(out) = render::rewrite(input, &defaults, req, &new_uuid) else {
        return;
    };
    let text = &out.text;

    if let Err(e) = well_formed(text) {
        panic!("rewrite output is not well-formed: {e}\n--- output ---\n{text}");
    }

    match render::rewrite(text, &defaults, req, &new_uuid) {
        Ok(again) => assert!(
            again.text == *text,
            "rewrite is not idempotent\n--- once ---\n{text}\n--- twice ---\n{}",
            again.text
        ),
        Err(e) => panic!("rewrite of its own output fails: {e}\n--- output ---\n{text}"),
    }

    let back = match render::strip(text, Mode::Full) {
        Ok(b) => b.text,
        Err(e) => panic!("strip of rewrite output fails: {e}\n--- output ---\n{text}"),
    };
    if let Err(e) = well_formed(&back) {
        panic!("strip output is not well-formed: {e}\n--- stripped ---\n{back}");
    }
    if has_record(&back) {
        panic!("strip left a virt-systemd record behind\n--- stripped ---\n{back}");
    }
    // `--force` deletes hand-written entries it replaces; those cannot come back.
    let replaced = out
        .notes
        .iter()
        .any(|n| n.starts_with("replacing hand-written"));
    if !has_record(input) && !replaced {
        assert!(
            back == input,
            "strip(rewrite(x)) != x\n--- input ---\n{input}\n--- rewritten ---\n{text}\n--- stripped ---\n{back}"
        );
    }
}

/// Decode `data` and check the laws under the three requests; panics on a violation.
pub fn check_all(data: &[u8]) {
    let Ok(input) = domain::decode(data) else {
        return;
    };
    parsers_agree(input);
    partial_tree_suffices(input);
    let full = full_request();
    check(input, &full);
    check(input, &Request::default());
    check(
        input,
        &Request {
            force: true,
            ..full
        },
    );
}

/// Law 0. Deliberate differences, skipped: `xmlns=""` (roxmltree gives elements the
/// namespace "" where Namespaces 1.0 says none) and a repeated `xmlns` attribute (roxmltree
/// accepts it; XML says an attribute appears once), an element named with the `xml`
/// prefix (bound by definition; roxmltree calls it unknown), a name with an empty prefix
/// (`<:a>`, ` :a='1'`: roxmltree reads the prefix as absent, Namespaces says no QName),
/// and a character reference to no
/// character (a surrogate or beyond U+10FFFF: roxmltree reads U+FFFD). In text with
/// references, roxmltree keeps a CR that comes right before a reference and turns a CR
/// from `&#13;` into a newline (XML: the other way round), so there texts are compared with
/// CR read as newline. roxmltree's range for a text node merged
/// from text and CDATA pieces covers the first piece only, so text ranges are compared at
/// their start.
pub fn parsers_agree(input: &str) {
    use virt_systemd_core::xtree;
    let ours = xtree::Document::parse(input);
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: xtree::NODES_LIMIT as u32,
        ..roxmltree::ParsingOptions::default()
    };
    let theirs = roxmltree::Document::parse_with_options(input, opts);
    let deliberate = deliberate(input);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) if !deliberate => same_node(input, a.root(), b.root()),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) if !deliberate => {
            panic!("xtree accepts what roxmltree rejects ({e})\n--- input ---\n{input}")
        }
        (Err(e), Ok(_)) if !deliberate => {
            panic!("xtree rejects ({e:?}) what roxmltree accepts\n--- input ---\n{input}")
        }
        _ => {}
    }
}

/// Does `input` have one of the constructs where roxmltree deliberately is not followed?
fn deliberate(input: &str) -> bool {
    input.contains("xmlns=\"\"")
        || input.contains("xmlns=''")
        || input.matches("xmlns").count() > 1
        || input.contains("<xml:")
        || input.contains("<:")
        || input.contains("</:")
        || [' ', '\t', '\n', '\r']
            .iter()
            .any(|w| input.contains(&format!("{w}:")))
        || refs_no_char(input)
}

/// Both parsers accept `text` (roxmltree unless `deliberate` applies).
fn well_formed(text: &str) -> Result<(), String> {
    virt_systemd_core::xtree::Document::parse(text).map_err(|e| format!("xtree: {e:?}"))?;
    match roxmltree::Document::parse(text) {
        Err(e) if !deliberate(text) => Err(format!("roxmltree: {e}")),
        _ => Ok(()),
    }
}

fn same_node(input: &str, a: virt_systemd_core::xtree::Node, b: roxmltree::Node) {
    use virt_systemd_core::xtree::NodeType as T;
    let kind = match b.node_type() {
        roxmltree::NodeType::Root => T::Root,
        roxmltree::NodeType::Element => T::Element,
        roxmltree::NodeType::Text => T::Text,
        roxmltree::NodeType::Comment => T::Comment,
        roxmltree::NodeType::PI => T::PI,
    };
    let at = || {
        format!(
            "at {:?} / {:?}\n--- input ---\n{input}",
            a.range(),
            b.range()
        )
    };
    assert_eq!(a.node_type(), kind, "node kinds differ {}", at());
    if kind == T::Text {
        assert_eq!(
            a.range().start,
            b.range().start,
            "text starts differ {}",
            at()
        );
    } else {
        assert_eq!(a.range(), b.range(), "ranges differ {}", at());
    }
    let cr_quirk = input.contains('&');
    let norm = |t: Option<&str>| {
        t.map(|t| {
            if cr_quirk {
                t.replace('\r', "\n")
            } else {
                t.to_string()
            }
        })
    };
    assert_eq!(norm(a.text()), norm(b.text()), "texts differ {}", at());
    if kind == T::Element {
        assert_eq!(
            a.tag_name().name(),
            b.tag_name().name(),
            "names differ {}",
            at()
        );
        assert_eq!(
            a.tag_name().namespace(),
            b.tag_name().namespace(),
            "namespaces differ {}",
            at()
        );
        let ours: Vec<_> = a
            .attributes()
            .map(|x| {
                (
                    x.name(),
                    x.namespace(),
                    x.value(),
                    x.range(),
                    x.range_value(),
                )
            })
            .collect();
        let theirs: Vec<_> = b
            .attributes()
            .map(|x| {
                (
                    x.name(),
                    x.namespace(),
                    x.value(),
                    x.range(),
                    x.range_value(),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "attributes differ {}", at());
    }
    let (ca, cb): (Vec<_>, Vec<_>) = (a.children().collect(), b.children().collect());
    assert_eq!(ca.len(), cb.len(), "child counts differ {}", at());
    for (x, y) in ca.into_iter().zip(cb) {
        same_node(input, x, y);
    }
}

/// Has `&#N;` / `&#xH;` naming a surrogate or a number beyond Unicode.
fn refs_no_char(input: &str) -> bool {
    input.split("&#").skip(1).any(|r| {
        let (digits, radix) = match r.strip_prefix('x') {
            Some(h) => (h, 16),
            None => (r, 10),
        };
        let end = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        digits[end..].starts_with(';')
            && u32::from_str_radix(&digits[..end], radix)
                .map_or(end > 0, |n| char::from_u32(n).is_none())
    })
}

/// Law 0b.
pub fn partial_tree_suffices(input: &str) {
    let run = || {
        let show = |r: virt_systemd_core::error::Result<render::Outcome>| {
            r.map(|o| (o.text, o.notes)).map_err(|e| e.to_string())
        };
        (
            show(render::rewrite(
                input,
                &RewriteDefaults::default(),
                &full_request(),
                &new_uuid,
            )),
            show(render::rewrite(
                input,
                &RewriteDefaults::default(),
                &Request::default(),
                &new_uuid,
            )),
            show(render::strip(input, Mode::Full)),
            DomainXml::parse(input)
                .map(|d| d.facts())
                .map_err(|e| e.to_string()),
        )
    };
    let partial = run();
    let whole = domain::with_full_trees(run);
    assert!(
        partial == whole,
        "results differ with the whole tree\n--- input ---\n{input}\n--- partial ---\n{partial:?}\n--- whole ---\n{whole:?}"
    );
}
