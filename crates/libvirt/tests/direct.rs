//! `virt-systemd-libvirt` run directly (as `virt-systemd` execs it) against libvirt's test
//! driver: it answers the libvirt commands with their documented exit codes. The commands
//! in depth: the root package's tests/admin_libvirt.rs, through `virt-systemd`.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virt-systemd-libvirt"))
        .args(["-c", "test:///default", "--config", "/dev/null"])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("VIRT_SYSTEMD_VHOST_VSOCK", "/nonexistent/vhost-vsock")
        .output()
        .unwrap()
}

#[test]
fn status_lists_the_test_drivers_domain() {
    let o = run(&["status", "--json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["version"], 1, "{v}");
    let names: Vec<&str> = v["domains"]
        .as_array()
        .expect("an array of domains")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    // test:///default defines exactly one domain, "test", not managed by us.
    assert_eq!(names, ["test"], "{v}");
    assert_eq!(v["domains"][0]["enabled"], false, "{v}");
    assert_eq!(v["domains"][0]["running"], true, "{v}");
}

#[test]
fn unknown_domain_exits_10() {
    let o = run(&["enable", "no-such-domain", "--dry-run"]);
    assert_eq!(o.status.code(), Some(10));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-domain"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
