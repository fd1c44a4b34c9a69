//! The hook binary as libvirt runs it, on the events that need no bus: `migrate` and
//! `restore` are filters (libvirt uses our stdout as the domain XML), so the XML must come
//! back byte for byte; events we do not handle, and no arguments at all, are answered
//! without touching anything. (The D-Bus events: tests/hook_*.rs and the labs.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn hook(args: &[&str], stdin: &[u8]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    // State under the temporary directory: these events must not create any.
    std::fs::write(
        &cfg,
        format!(
            "[hook]\npid_dir = \"{0}\"\nstate_dir = \"{0}/state\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_virt-systemd-hook"))
        .args(args)
        .env("VIRT_SYSTEMD_CONFIG", &cfg)
        .env("VIRT_SYSTEMD_LOG_STDERR", "1")
        // No bus: any attempt to use one fails (and must not be made).
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        !dir.path().join("state").exists(),
        "{args:?} wrote state: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Not a valid domain XML at all, with CRLF, a BOM-less non-UTF-8 byte and no final newline:
/// a filter must not parse, re-encode or normalise what it passes on.
const ODD: &[u8] = b"<domain type='kvm'>\r\n  <name>web</name>\xff\r\n<devices/>";

#[test]
fn migrate_and_restore_pass_the_xml_through_unchanged() {
    for op in ["migrate", "restore"] {
        let out = hook(&["web", op, "begin", "-"], ODD);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{op}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, ODD, "{op} changed the XML");
    }
}

#[test]
fn events_we_do_not_handle_change_nothing() {
    for op in ["attach", "detach", "shutdown"] {
        let out = hook(&["web", op, "begin", "-"], ODD);
        assert_eq!(out.status.code(), Some(0), "{op}");
        assert!(out.stdout.is_empty(), "{op} wrote to stdout");
    }
}

#[test]
fn prepare_with_unreadable_xml_fails_open() {
    let out = hook(&["web", "prepare", "begin", "-"], ODD);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the domain XML"), "{err}");
    assert!(err.contains("VM left alone"), "{err}");
}

#[test]
fn no_arguments_is_a_usage_error() {
    let out = hook(&[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: virt-systemd-hook"));
}
