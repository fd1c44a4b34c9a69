//! The hook binary as libvirt runs it, on the events that need no bus: `migrate` and
//! `restore` are filters (libvirt uses our stdout as the domain XML), so the XML must come
//! back byte for byte; events we do not handle, and no arguments at all, are answered
//! without touching anything. (The D-Bus events: tests/hook_*.rs and the labs.)

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Run `cmd` (the hook, or a command that execs it) with `args` as libvirt would, the config
/// at `cfg`, logs on stderr, `stdin` fed and closed.
fn run(mut cmd: Command, args: &[&str], cfg: &std::path::Path, stdin: &[u8]) -> Output {
    let mut c = cmd
        .args(args)
        .env("VIRT_SYSTEMD_CONFIG", cfg)
        .env("VIRT_SYSTEMD_LOG_STDERR", "1")
        // No bus: any attempt to use one fails (and must not be made).
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

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
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_virt-systemd-hook")),
        args,
        &cfg,
        stdin,
    );
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

/// A session daemon (qemu:///session) runs the same hook as its user. With no machined of
/// that user's (no /run/user/UID here), the hook touches nothing of the system daemon's (no
/// state, no bus) and says once per start why the VM is not registered.
#[test]
fn session_hook_registers_nothing_and_says_so() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED session_hook_registers_nothing_and_says_so: needs root to run the hook as another user");
        return;
    }
    // Everything the user needs, readable by it: the binary (the build tree may not be) and
    // the config; the state directory is root's and must stay untouched.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("virt-systemd-hook");
    std::fs::copy(env!("CARGO_BIN_EXE_virt-systemd-hook"), &bin).unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hook]\npid_dir = \"{0}\"\nstate_dir = \"{1}\"\n",
            dir.path().display(),
            state.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("web.pid"), std::process::id().to_string()).unwrap();
    let xml = b"<domain type='kvm' id='1'><name>web</name><uuid>6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f</uuid><os><type>hvm</type></os><devices/></domain>";
    let as_nobody = |op: &str| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        let out = run(c, &["web", op, "begin", "-"], &cfg, xml);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for op in [
        "prepare",
        "start",
        "started",
        "reconnect",
        "stopped",
        "release",
    ] {
        let (code, err) = as_nobody(op);
        assert_eq!(code, Some(0), "{op}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        if op == "started" {
            assert_eq!(lines.len(), 1, "{op}: one line: {err}");
            assert!(
                lines[0].contains("session domain: not registered: no per-user systemd-machined"),
                "{op}: {err}"
            );
            assert!(lines[0].contains("INFO"), "{op}: {err}");
        } else {
            assert!(lines.is_empty(), "{op}: {err}");
        }
    }
    assert!(
        !state.exists(),
        "a session hook wrote to the system state dir"
    );
}
