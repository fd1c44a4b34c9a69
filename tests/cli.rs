//! The `virt-systemd` binary's contract: one clear stderr line per problem, a distinct
//! exit code per class, and nothing written when anything fails.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_virt-systemd");
const GOOD: &str = "<domain type='kvm'>\n  <name>t</name>\n  <uuid>0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0</uuid>\n  <os>\n    <type>hvm</type>\n  </os>\n  <devices>\n  </devices>\n</domain>\n";

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(BIN)
        .args(["--config", "/dev/null"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let _ = c.stdin.take().unwrap().write_all(stdin);
    c.wait_with_output().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad input: (name, bytes, exit code, text the one error line must contain).
const BAD_INPUT: &[(&str, &[u8], i32, &str)] = &[
    ("not xml", b"hello world\n", 4, "1:1: not well-formed XML"),
    ("not a domain", b"<network><name>n</name></network>", 5, "root element is <network>, not a libvirt <domain>"),
    ("truncated", b"<domain type='kvm'>\n  <name>t</name>\n", 4, "3:1: not well-formed XML: document is truncated"),
    ("several roots", b"<domain><name>a</name></domain>\n<domain/>", 4, "2:1: not well-formed XML"),
    ("doctype with entities", b"<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>\n<domain><name>&x;</name></domain>", 4, "DOCTYPE is not accepted"),
    ("invalid utf-8", b"<domain>\n  <name>\xff\xfe</name>\n</domain>", 4, "2:9: not well-formed XML: input is not valid UTF-8"),
    ("mismatched tags", b"<domain><name>a</nam></domain>", 4, "1:16: not well-formed XML: expected 'name' tag, not 'nam'"),
    ("unknown entity", b"<domain><name>&nbsp;</name></domain>", 4, "not well-formed XML"),
    ("empty", b"", 4, "no root element"),
    ("no name", b"<domain><os><type>hvm</type></os></domain>", 5, "no <name>"),
    ("two <os>", b"<domain><name>a</name><os/>\n<os/></domain>", 5, "line 2, column 1: a second <os>; a libvirt domain has one"),
    ("empty uuid", b"<domain><name>a</name>\n<uuid></uuid></domain>", 5, "line 2, column 1: <uuid> is empty"),
    ("markup in uuid", b"<domain><name>a</name><uuid><x/>1</uuid></domain>", 5, "line 1, column 29: <uuid> holds markup; libvirt expects only text"),
    ("stray element in our namespace", b"<domain><name>a</name><metadata><v:other xmlns:v='urn:virt-systemd:domain:1'/></metadata></domain>", 5, "<other> in virt-systemd's namespace urn:virt-systemd:domain:1 is not virt-systemd's"),
    ("two records", b"<domain><name>a</name><metadata><v:virt-systemd xmlns:v='urn:virt-systemd:domain:1'/><v:virt-systemd xmlns:v='urn:virt-systemd:domain:1'/></metadata></domain>", 5, "a second virt-systemd record"),
];

#[test]
fn bad_input_classes() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, code, msg) in BAD_INPUT {
        let f = dir.path().join("in.xml");
        fs::write(&f, bytes).unwrap();
        let out = dir.path().join("out.xml");
        let o = run(
            &["rewrite", f.to_str().unwrap(), "-o", out.to_str().unwrap()],
            b"",
        );
        let e = err(&o);
        assert_eq!(o.status.code(), Some(*code), "{name}: {e}");
        assert!(e.contains(msg), "{name}: {e:?} lacks {msg:?}");
        assert_eq!(e.lines().count(), 1, "{name}: one line: {e:?}");
        assert!(e.starts_with("virt-systemd: error: "), "{name}: {e}");
        assert!(!out.exists(), "{name}: -o target created");
        let o = run(&["rewrite", "--in-place", f.to_str().unwrap()], b"");
        assert_eq!(o.status.code(), Some(*code), "{name} in place");
        assert_eq!(&fs::read(&f).unwrap(), bytes, "{name}: file changed");
        // The same through stdin names <stdin>.
        let o = run(&["rewrite"], bytes);
        assert_eq!(o.status.code(), Some(*code), "{name} stdin");
        assert!(o.stdout.is_empty(), "{name}: nothing on stdout");
        if *code == 4 {
            assert!(err(&o).contains("<stdin>:"), "{name}: {}", err(&o));
        }
    }
}

#[test]
fn unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.xml");
    let o = run(&["rewrite", missing.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("nope.xml: No such file"), "{}", err(&o));
    // A directory cannot be read as a file (root reads anything mode 000).
    let o = run(&["rewrite", dir.path().to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
}

fn with_input(args: &[&str]) -> Output {
    let mut a = vec!["rewrite"];
    a.extend_from_slice(args);
    run(&a, GOOD.as_bytes())
}

#[test]
fn validation_rules() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    fs::write(&big, vec![7u8; 1024 * 1024 + 1]).unwrap();
    let half = dir.path().join("half");
    fs::write(&half, vec![7u8; 600 * 1024]).unwrap();
    let private = dir.path().join("id");
    fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").unwrap();
    let notkey = dir.path().join("notkey.pub");
    fs::write(&notkey, "hello\n").unwrap();
    let long = "n".repeat(256);
    let fw_long = "s".repeat(29);
    let p = |p: &Path| format!("h={}", p.display());
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--credential".into(), "=x".into()],
            6,
            "credential name \"\" is not valid: it is empty",
        ),
        (
            vec!["--credential".into(), "a/b=x".into()],
            6,
            "it contains '/'",
        ),
        (
            vec!["--credential".into(), "a:b=x".into()],
            6,
            "it contains ':'",
        ),
        (
            vec!["--credential".into(), "a\tb=x".into()],
            6,
            "it contains '\\t'",
        ),
        (
            vec!["--credential".into(), "..=x".into()],
            6,
            "not a file name",
        ),
        (
            vec!["--credential".into(), format!("{long}=x")],
            6,
            "256 bytes, the limit is 255",
        ),
        (
            vec!["--credential".into(), "noequals".into()],
            6,
            "wants NAME=…",
        ),
        (
            vec!["--credential".into(), "pw=sec\u{1}ret".into()],
            6,
            "U+0001, which cannot be carried in a domain XML; pass it with --credential-file",
        ),
        (
            vec!["--credential-file".into(), p(&big)],
            6,
            "1048577 bytes, the limit is 1048576",
        ),
        (
            vec![
                "--credential-file".into(),
                format!("a={}", half.display()),
                "--credential-file".into(),
                format!("b={}", half.display()),
            ],
            6,
            "credentials total 1228800 bytes",
        ),
        (
            vec!["--credential-file".into(), "a=/nonexistent".into()],
            3,
            "/nonexistent: No such file",
        ),
        (
            vec!["--hostname".into(), "bad_name".into()],
            6,
            "hostname \"bad_name\" is not valid",
        ),
        (vec!["--hostname=-x".into()], 6, "is not valid"),
        (
            vec!["--ssh-key".into(), private.display().to_string()],
            6,
            "holds a private key",
        ),
        (
            vec!["--ssh-key".into(), notkey.display().to_string()],
            6,
            "is not an SSH public key file",
        ),
        (
            vec!["--ssh-key".into(), "/no/such.pub".into()],
            3,
            "/no/such.pub",
        ),
        (
            vec!["--secret-credential".into(), "s=relative/path".into()],
            6,
            "is not an absolute path",
        ),
        (
            vec!["--secret-credential".into(), format!("{fw_long}=/x")],
            6,
            "QEMU allows 55",
        ),
        (
            vec!["--notify-port".into(), "0".into()],
            6,
            "not a usable vsock port",
        ),
        (
            vec![
                "--credential".into(),
                "system.machine_id=x".into(),
                "--machine-id".into(),
            ],
            6,
            "is set by --machine-id",
        ),
        (
            vec!["--credential".into(), "vmm.notify_socket=x".into()],
            6,
            "is set by --notify",
        ),
        (
            vec!["-o".into(), "/nonexistent/dir/out.xml".into()],
            8,
            "cannot write /nonexistent/dir/out.xml",
        ),
    ];
    for (args, code, msg) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = with_input(&a);
        let e = err(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {e}");
        assert!(e.contains(msg), "{args:?}: {e:?} lacks {msg:?}");
        assert_eq!(e.lines().count(), 1, "{args:?}: {e:?}");
        assert!(o.stdout.is_empty(), "{args:?}: wrote output");
        assert!(!e.contains("sec\u{1}ret"), "value leaked: {e}");
    }
}

#[test]
fn too_many_oem_strings() {
    let mut args = vec![];
    for i in 0..255 {
        args.push("--credential".to_string());
        args.push(format!("c{i}=v"));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = with_input(&a);
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(err(&o).contains("256 OEM strings in all, SMBIOS type 11 holds at most 255"));
    // 254 credentials + the readiness socket fit.
    let o = with_input(&a[..a.len() - 2]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn conflicts_need_force() {
    let host = GOOD.replace(
        "<type>hvm</type>",
        "<type>hvm</type>\n    <smbios mode='host'/>",
    );
    let o = run(&["rewrite", "--credential", "a=1"], host.as_bytes());
    assert_eq!(o.status.code(), Some(7));
    assert!(err(&o)
        .contains("<os><smbios mode='host'/> keeps libvirt from passing OEM strings; use --force"));
    let o = run(
        &["rewrite", "--credential", "a=1", "--force"],
        host.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("<smbios mode='sysinfo'/>"));
    // Reversible: strip puts mode='host' back.
    let back = run(&["rewrite", "--strip"], out.as_bytes());
    assert_eq!(String::from_utf8(back.stdout).unwrap(), host);
    // Idempotent without --force: the switch is recorded as ours.
    let again = run(&["rewrite", "--credential", "a=1"], out.as_bytes());
    assert_eq!(again.status.code(), Some(0), "{}", err(&again));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), out);

    let hand = GOOD.replace(
        "<devices>",
        "<sysinfo type='smbios'>\n    <oemStrings>\n      <entry>io.systemd.credential:a=mine</entry>\n      <entry>io.systemd.credential:other=x</entry>\n    </oemStrings>\n  </sysinfo>\n  <devices>",
    );
    let o = run(&["rewrite", "--credential", "a=1"], hand.as_bytes());
    assert_eq!(o.status.code(), Some(7));
    assert!(err(&o).contains("hand-written OEM string for credential a; use --force"));
    assert!(!err(&o).contains("mine"), "value leaked");
    let o = run(
        &["rewrite", "--credential", "a=1", "--force"],
        hand.as_bytes(),
    );
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(!out.contains("a=mine") && out.contains("io.systemd.credential:a=1"));
    assert!(
        out.contains("io.systemd.credential:other=x"),
        "unmanaged entry kept"
    );
    assert!(
        err(&o).contains("keeping OEM string for credential other: not managed by virt-systemd")
    );
}

/// A `<cmdline>` with markup inside: appending could not be undone exactly, so refuse.
#[test]
fn cmdline_with_markup_is_refused() {
    let k = "<domain type='kvm'>\n  <name>k</name>\n  <os>\n    <type>hvm</type>\n    <kernel>/k</kernel>\n    <cmdline>a<!-- b -->c</cmdline>\n  </os>\n</domain>\n";
    let o = run(&["rewrite", "--kernel-cmdline", "quiet"], k.as_bytes());
    assert_eq!(o.status.code(), Some(7), "{}", err(&o));
    assert!(err(&o).contains("<os><cmdline> holds markup, not only text"));
    assert!(o.stdout.is_empty());
    let plain = k.replace("a<!-- b -->c", "ac");
    let o = run(&["rewrite", "--kernel-cmdline", "quiet"], plain.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .contains("<cmdline>ac quiet</cmdline>"));
}

#[test]
fn in_place_keeps_mode_and_writes_atomically() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.xml");
    fs::write(&f, GOOD).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    let o = run(
        &["rewrite", "-i", f.to_str().unwrap(), "--hostname", "h1"],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = fs::read_to_string(&f).unwrap();
    assert!(s.contains("io.systemd.credential:system.hostname=h1"));
    assert_eq!(
        fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp files left"
    );
    let o = run(&["rewrite", "-i", "-"], b"");
    assert_eq!(o.status.code(), Some(6));
    // -o creates a private file: it may hold credentials.
    let out = dir.path().join("new.xml");
    let o = run(
        &["rewrite", f.to_str().unwrap(), "-o", out.to_str().unwrap()],
        b"",
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn config_errors_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.toml");
    fs::write(&c, "[rewrite]\nvsock = false\nnotify_port = 9999\n").unwrap();
    let o = Command::new(BIN)
        .args(["--config", c.to_str().unwrap(), "rewrite", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(GOOD.as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("vsock-stream:2:9999"), "{out}");
    assert!(!out.contains("<vsock"), "config vsock=false honoured");
    fs::write(&c, "[rewrite]\nvsok = false\n").unwrap();
    let o = Command::new(BIN)
        .args(["--config", c.to_str().unwrap(), "show", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(9));
    assert!(err(&o).contains("unknown field `vsok`"), "{}", err(&o));
    let o = Command::new(BIN)
        .args(["--config", "/nonexistent.toml", "show", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(9));
}

#[test]
fn show_json_reports_names_not_values() {
    let o = run(
        &["rewrite", "--credential", "pw=s3cr3t-value", "--machine-id"],
        GOOD.as_bytes(),
    );
    let out = o.stdout;
    let s = run(&["show", "--json"], &out);
    assert_eq!(s.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["enabled"], true);
    assert_eq!(v["name"], "t");
    assert_eq!(v["drift"].as_array().unwrap().len(), 0);
    assert_eq!(v["intent"]["credentials"][0]["name"], "pw");
    assert!(!String::from_utf8_lossy(&s.stdout).contains("s3cr3t"));
    // Drift: remove the vsock and the credential by hand.
    let text = String::from_utf8(out).unwrap();
    let broken = text
        .replace("<entry>io.systemd.credential:pw=s3cr3t-value</entry>", "")
        .replace(
            "<vsock model='virtio'>\n      <cid auto='yes'/>\n    </vsock>",
            "",
        );
    let s = run(&["show", "--json"], broken.as_bytes());
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let drift: Vec<&str> = v["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(
        drift,
        vec!["credential pw: entry missing", "vsock device missing"]
    );
}
