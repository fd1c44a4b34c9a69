//! The administrator's CLI contract: `--help` texts (snapshots) and one exit code per error
//! class, each with one clear line on stderr.
//!
//! Snapshots live in tests/admin_data/help/; `UPDATE_SNAPSHOTS=1 cargo test --test
//! admin_cli` rewrites them (review the diff: a changed help text is a user-visible change).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use virt_systemd::ExitCode;

#[path = "common/bins.rs"]
mod bins;

const BIN: &str = env!("CARGO_BIN_EXE_virt-systemd");

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/admin_data")
}

fn node_uri() -> String {
    format!("test://{}", data().join("node.xml").display())
}

fn update() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Run with a clean environment for what the binary looks at.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    // The libvirt commands run in virt-systemd-libvirt, which virt-systemd execs.
    bins::dir();
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn help_snapshots() {
    let cases: &[(&str, &[&str])] = &[
        ("virt-systemd", &["--help"]),
        ("enable", &["enable", "--help"]),
        ("disable", &["disable", "--help"]),
        ("status", &["status", "--help"]),
        ("doctor", &["doctor", "--help"]),
        ("hook-install", &["hook-install", "--help"]),
        ("rewrite", &["rewrite", "--help"]),
        ("show", &["show", "--help"]),
        ("notify-listener", &["notify-listener", "--help"]),
        ("wait-ready", &["wait-ready", "--help"]),
        ("ssh", &["ssh", "--help"]),
        ("vsock-proxy", &["vsock-proxy", "--help"]),
    ];
    let dir = data().join("help");
    let mut bad = Vec::new();
    for (name, args) in cases {
        let o = run(args, &[]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        let got = String::from_utf8(o.stdout).unwrap();
        let path = dir.join(format!("{name}.txt"));
        if update() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            bad.push(format!(
                "{name}: help differs from {} (UPDATE_SNAPSHOTS=1 to accept)\n--- want\n{want}\n--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn exit_code_numbers_are_stable() {
    let table = [
        (ExitCode::Ok, 0),
        (ExitCode::Failure, 1),
        (ExitCode::Usage, 2),
        (ExitCode::InputUnreadable, 3),
        (ExitCode::NotXml, 4),
        (ExitCode::NotDomain, 5),
        (ExitCode::Invalid, 6),
        (ExitCode::Conflict, 7),
        (ExitCode::OutputFailed, 8),
        (ExitCode::Config, 9),
        (ExitCode::NoSuchDomain, 10),
        (ExitCode::CannotConnect, 11),
        (ExitCode::PermissionDenied, 12),
        (ExitCode::ChangedConcurrently, 13),
        (ExitCode::Transient, 14),
    ];
    for (c, n) in table {
        assert_eq!(c as i32, n, "{c:?}");
    }
}

/// (what, args, environment, exit code, text the single stderr line contains)
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, i32, &'a str);

#[test]
fn exit_codes_per_error_class() {
    let node = node_uri();
    let tmp = tempfile::tempdir().unwrap();
    let bad_cfg = tmp.path().join("bad.toml");
    std::fs::write(&bad_cfg, "[rewrite]\nvsok = true\n").unwrap();
    let hooks = tmp.path().join("hooks");
    std::fs::create_dir_all(hooks.join("qemu.d")).unwrap();
    std::fs::write(hooks.join("qemu.d/50-virt-systemd"), "#!/bin/sh\n").unwrap();
    let hooks_s = hooks.to_str().unwrap();
    let cfg_s = bad_cfg.to_str().unwrap();
    // (what, args, env, exit code, text the single stderr line contains)
    let cases: &[Case] = &[
        ("usage", vec!["enable"], vec![], 2, "DOMAIN"),
        (
            "invalid request",
            vec!["-c", &node, "enable", "off", "--hostname", "bad_name"],
            vec![],
            6,
            "hostname \"bad_name\" is not valid",
        ),
        (
            "hook binary not executable",
            vec!["hook-install", "--hook", cfg_s],
            vec![("VIRT_SYSTEMD_HOOKS_DIR", hooks_s)],
            6,
            "not an executable file",
        ),
        (
            "bad config",
            vec!["-c", &node, "--config", cfg_s, "status"],
            vec![],
            9,
            "unknown field `vsok`",
        ),
        (
            "unknown domain",
            vec!["-c", &node, "enable", "nope"],
            vec![],
            10,
            "domain 'nope' not found",
        ),
        (
            "unknown domain (status)",
            vec!["-c", &node, "status", "off", "nope"],
            vec![],
            10,
            "domain 'nope' not found",
        ),
        (
            "unknown domain (disable)",
            vec!["-c", &node, "disable", "nope"],
            vec![],
            10,
            "domain 'nope' not found",
        ),
        (
            "unreachable URI",
            vec![
                "-c",
                "qemu+unix:///system?socket=/nonexistent/sock",
                "status",
            ],
            vec![],
            11,
            "cannot connect to qemu+unix:///system?socket=/nonexistent/sock",
        ),
        (
            "default URI unreachable",
            vec!["status"],
            vec![(
                "LIBVIRT_DEFAULT_URI",
                "qemu+unix:///system?socket=/nonexistent/sock",
            )],
            11,
            "cannot connect to the default URI",
        ),
        (
            "read-only connection",
            vec!["-c", &node, "--readonly", "enable", "off"],
            vec![],
            12,
            "operation forbidden",
        ),
        (
            "transient",
            vec!["-c", &node, "disable", "tr"],
            vec![],
            14,
            "domain 'tr' is transient",
        ),
        (
            "doctor fails",
            vec!["--config", "/dev/null", "-c", &node, "doctor"],
            vec![("VIRT_SYSTEMD_HOOKS_DIR", "/nonexistent")],
            1,
            "failed",
        ),
    ];
    // A file of someone else's where our link goes: conflict, file untouched.
    let fake_hook = tmp.path().join("virt-systemd-hook");
    std::fs::copy("/bin/true", &fake_hook).unwrap();
    let conflict = run(
        &["hook-install", "--hook", fake_hook.to_str().unwrap()],
        &[("VIRT_SYSTEMD_HOOKS_DIR", hooks_s)],
    );
    assert_eq!(conflict.status.code(), Some(7), "{conflict:?}");
    let e = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        e.contains("is a regular file, not virt-systemd's link"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(hooks.join("qemu.d/50-virt-systemd")).unwrap(),
        "#!/bin/sh\n"
    );

    for (what, args, env, code, msg) in cases {
        let o = run(args, env);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(*code), "{what}: {e}");
        assert!(e.contains(msg), "{what}: {e:?} lacks {msg:?}");
        if *code != 2 {
            let errors: Vec<&str> = e.lines().filter(|l| !l.contains(": note: ")).collect();
            assert_eq!(errors.len(), 1, "{what}: one error line: {e:?}");
            assert!(
                errors[0].starts_with("virt-systemd: error: "),
                "{what}: {e}"
            );
        }
    }
}
