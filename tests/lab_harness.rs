//! The lab itself (tests/lab/), checked in both libvirt cgroup modes: the project's binaries are
//! visible in the container, a hook installed into /etc/libvirt/hooks/qemu.d/ by the harness is
//! run by libvirtd with the documented argv and the domain XML on stdin, libvirt's own machined
//! registration happens exactly when it has usable cgroups, and teardown leaves nothing behind.

#[path = "lab/mod.rs"]
mod lab;

use lab::{announce, ct_bin, Lab, Options};
use std::time::{Duration, Instant};

const NAME: &str = "vsd-tiny";
const UUID: &str = "6c1e1a2b-7d1f-4c57-9c4e-0000000000a1";
const SERIAL: &str = "/var/log/libvirt/qemu/vsd-tiny-serial.log";
const HOOK_LOG: &str = "/var/log/lab-hook.log";
/// A hook that logs its argv and the first line of the XML libvirt feeds it.
const HOOK: &str = r#"#!/bin/sh
xml=$(cat)
printf 'ARGV: %s | STDIN: %s\n' "$*" "$(printf '%s\n' "$xml" | head -n 1)" >> /var/log/lab-hook.log
exit 0
"#;

fn domain_xml() -> String {
    lab::Domain::tiny(NAME, UUID, SERIAL).xml()
}

fn harness(suite: &str, libvirt_cgroups: bool) {
    let Some(lab) = Lab::up_with(Options::new(suite).libvirt_cgroups(libvirt_cgroups)) else {
        return;
    };
    let t0 = Instant::now();

    // the freshly built binaries, bind-mounted read-only
    let v = lab.run(&[&ct_bin("virt-systemd"), "--version"]);
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")),
        "unexpected version output {v:?}"
    );
    lab.run(&["test", "-x", &ct_bin("virt-systemd-hook")]);
    let ro = lab.exec(&["touch", &ct_bin("lab-write-test")]);
    assert!(!ro.status.success(), "the binaries' bind mount is writable");

    // hook installed by the harness, libvirtd restarted
    lab.install_hook("10-lab-argv-log", HOOK.as_bytes());
    lab.write_file("/root/tiny.xml", domain_xml().as_bytes(), "644");
    lab.virsh(&["define", "/root/tiny.xml"]);
    lab.virsh(&["start", NAME]);
    // TCG on a loaded machine: the bound only catches a guest that never boots.
    lab.wait_for_text(SERIAL, "TINYGUEST", Duration::from_secs(300));

    // libvirt's own registration with machined, and where QEMU's cgroup is
    let machines = lab.run(&["machinectl", "list", "--no-legend", "--no-pager"]);
    let pid = lab.sh(&format!("cat /run/libvirt/qemu/{NAME}.pid"));
    let cgroup = lab.sh(&format!("cat /proc/{}/cgroup", pid.trim()));
    if libvirt_cgroups {
        assert!(
            machines.contains(&format!("-{NAME}")) && machines.contains("qemu-"),
            "with usable cgroups libvirt should register qemu-N-{NAME} with machined: {machines:?}"
        );
        assert!(
            cgroup.contains("machine-qemu"),
            "QEMU should be in libvirt's machine scope: {cgroup}"
        );
    } else {
        assert!(
            !machines.contains(NAME),
            "without cgroups libvirt should not register with machined: {machines:?}"
        );
        assert!(
            cgroup.contains("libvirtd.service"),
            "QEMU should stay in libvirtd.service: {cgroup}"
        );
    }
    lab.virsh(&["destroy", NAME]);
    let log = lab.wait_for_text(
        HOOK_LOG,
        &format!("ARGV: {NAME} release end"),
        Duration::from_secs(120),
    );
    let log = String::from_utf8_lossy(&log).into_owned();
    for op in [
        "prepare begin -",
        "start begin -",
        "started begin -",
        "stopped end -",
        "release end ",
    ] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("ARGV: {NAME} {op}")))
            .unwrap_or_else(|| panic!("hook not run for {op:?}:\n{log}"));
        assert!(
            line.contains("| STDIN: <domain"),
            "hook for {op:?} got no domain XML on stdin: {line}"
        );
    }

    // removed again: libvirtd no longer runs it
    lab.remove_hook("10-lab-argv-log");
    let before = lab.read_file(HOOK_LOG).len();
    lab.virsh(&["start", NAME]);
    lab.virsh(&["destroy", NAME]);
    assert_eq!(
        lab.read_file(HOOK_LOG).len(),
        before,
        "removed hook still ran"
    );
    lab.virsh(&["undefine", NAME]);
    let body = t0.elapsed();

    // teardown: lab-down.sh checks (under the host-wide lock) that no nspawn, no process of the
    // container and no nspawn cgroup is left and that the host's cgroup toggle is as it was
    let down = lab.down();
    assert!(down.is_ok(), "teardown was not clean: {down:?}");
    announce(&format!(
        "lab {suite} (LAB_LIBVIRT_CGROUPS={}): harness ok, test body {:.1} s",
        libvirt_cgroups as u8,
        body.as_secs_f64()
    ));
}

#[test]
fn harness_trixie() {
    harness("trixie", false);
    harness("trixie", true);
}

#[test]
fn harness_bookworm() {
    harness("bookworm", false);
    harness("bookworm", true);
}

#[test]
fn harness_sid() {
    harness("sid", false);
    harness("sid", true);
}
