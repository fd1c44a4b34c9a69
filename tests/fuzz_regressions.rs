//! Inputs the fuzzer once broke (fuzz/regressions/rewrite/), replayed on every test run
//! with the fuzz target's laws and requests, so they stay fixed without cargo-fuzz.

use virt_systemd::config::RewriteDefaults;
use virt_systemd::credential::{Credential, Value};
use virt_systemd::domain::{self, DomainXml};
use virt_systemd::intent::Request;
use virt_systemd::metadata;
use virt_systemd::render::{self, strip::Mode};

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

fn check(name: &str, input: &str, req: &Request) {
    let defaults = RewriteDefaults::default();
    let uuid = || "6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f".to_string();
    let Ok(out) = render::rewrite(input, &defaults, req, &uuid) else {
        return;
    };
    let text = &out.text;
    roxmltree::Document::parse(text)
        .unwrap_or_else(|e| panic!("{name}: output not well-formed: {e}\n{text}"));
    let again = render::rewrite(text, &defaults, req, &uuid).unwrap().text;
    assert_eq!(&again, text, "{name}: not idempotent");
    let back = render::strip(text, Mode::Full).unwrap().text;
    roxmltree::Document::parse(&back).unwrap();
    assert!(!has_record(&back), "{name}: record left");
    let replaced = out
        .notes
        .iter()
        .any(|n| n.starts_with("replacing hand-written"));
    if !has_record(input) && !replaced {
        assert_eq!(back, input, "{name}: strip(rewrite(x)) != x");
    }
}

#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/rewrite");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let Ok(input) = domain::decode(&bytes) else {
            continue;
        };
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let full = full_request();
        check(&name, input, &full);
        check(&name, input, &Request::default());
        check(
            &name,
            input,
            &Request {
                force: true,
                ..full
            },
        );
        n += 1;
    }
    assert!(n >= 3, "regression inputs found: {n}");
}
