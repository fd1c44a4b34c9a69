//! The rewrite laws the fuzz target checks, shared with `tests/fuzz_regressions.rs` (which
//! replays the inputs the fuzzer once broke) through `#[path]`, so both check the same.
//!
//! Laws checked whenever `rewrite` accepts the input (errors are fine, panics are not):
//! 1. the output is well-formed XML (roxmltree parses it);
//! 2. rewriting the output again with the same request gives the same bytes;
//! 3. `strip(Full)` of the output succeeds and leaves no virt-systemd record behind;
//!    when the input had no record of ours, it gives back exactly the input bytes (unless
//!    `--force` replaced a hand-written entry, which is gone for good by design).
//!
//! Three requests are tried on every input: a realistic flag set (hostname, machine ID, SSH
//! key, text credentials with characters to escape, a fw_cfg secret credential, kernel
//! command line), the bare defaults (vsock + notify only), and the full set with `--force`.

use virt_systemd::config::RewriteDefaults;
use virt_systemd::credential::{Credential, Value};
use virt_systemd::domain::{self, DomainXml};
use virt_systemd::intent::Request;
use virt_systemd::metadata;
use virt_systemd::render::{self, strip::Mode};

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

    if let Err(e) = roxmltree::Document::parse(text) {
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
    if let Err(e) = roxmltree::Document::parse(&back) {
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
