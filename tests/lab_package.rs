//! The .deb, installed the way administrators install it, in the lab (real systemd, machined,
//! libvirtd, QEMU): `dpkg -i` → the hook works without touching libvirtd by hand (postinst
//! reloads it), survives a libvirtd restart, the listener's socket is enabled, `man` and bash
//! completion work; a reinstall keeps the administrator's config; `dpkg -r` takes the hook out
//! and leaves the running VM alone; `dpkg -P` leaves none of the manifest's files.
//!
//! The package is built by `packaging/debian/build-deb.sh` (what `make deb` runs) from this
//! test build's binaries.

#[path = "lab/mod.rs"]
mod lab;

use lab::Lab;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LINK: &str = "/etc/libvirt/hooks/qemu.d/50-virt-systemd";
/// Waits for what must happen: only bounds a hang (TCG guests on a loaded machine are slow).
const LONG: Duration = Duration::from_secs(180);
const NAME: &str = "vsd-pkg";
const UUID: &str = "6c1e1a2b-7d1f-4c57-9c4e-00000000d0eb";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn build_deb(suite: &str) -> PathBuf {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-package-{suite}"));
    let out = Command::new(root().join("packaging/debian/build-deb.sh"))
        .arg("--bindir")
        .arg(lab::bin_dir())
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("build-deb.sh");
    assert!(
        out.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Every path the package installs on Debian (the manifest as build-deb.sh expands it).
fn manifest_paths() -> Vec<(String, String)> {
    let out = Command::new(root().join("packaging/install.sh"))
        .args([
            "--list",
            "--gzip-man",
            "--zsh-completions",
            "/usr/share/zsh/vendor-completions",
        ])
        .output()
        .expect("install.sh --list");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c[0].to_string(), c[2].to_string())
        })
        .collect()
}

fn domain_xml() -> String {
    lab::Domain::tiny(
        NAME,
        UUID,
        &format!("/var/log/libvirt/qemu/{NAME}-serial.log"),
    )
    .xml()
}

fn machine_prop(lab: &Lab, prop: &str) -> Option<String> {
    let out = lab.exec(&["machinectl", "show", NAME, "-p", prop, "--value"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn qemu_pid(lab: &Lab) -> String {
    lab.run(&["cat", &format!("/run/libvirt/qemu/{NAME}.pid")])
        .trim()
        .to_string()
}

fn exists(lab: &Lab, path: &str) -> bool {
    lab.exec(&["test", "-e", path]).status.success()
        || lab.exec(&["test", "-L", path]).status.success()
}

fn dpkg(lab: &Lab, args: &[&str]) -> String {
    let mut argv = vec!["dpkg"];
    argv.extend_from_slice(args);
    let out = lab.exec(&argv);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dpkg {args:?} failed:\n{text}");
    text
}

fn session(suite: &str) {
    let Some(lab) = Lab::up(suite) else { return };
    let deb = build_deb(suite);
    lab.copy_in(&deb, "/root/virt-systemd.deb", "644");
    let since = lab.now();

    // --- install: Depends satisfied by the lab's packages, postinst reloads libvirtd
    let log = dpkg(&lab, &["-i", "/root/virt-systemd.deb"]);
    assert!(
        log.contains("reloading libvirtd.service"),
        "postinst did not reload libvirtd:\n{log}"
    );
    assert_eq!(
        lab.run(&["readlink", LINK]).trim(),
        "/usr/libexec/virt-systemd/virt-systemd-hook"
    );
    lab.run(&["test", "-x", "/usr/libexec/virt-systemd/virt-systemd-hook"]);
    lab.run(&["test", "-d", "/run/virt-systemd"]);
    assert_eq!(
        lab.run(&["dpkg-query", "-W", "-f", "${Conffiles}", "virt-systemd"])
            .split_whitespace()
            .next(),
        Some("/etc/virt-systemd/config.toml")
    );
    let version = lab.run(&["virt-systemd", "--version"]);
    assert!(version.starts_with("virt-systemd "), "{version}");
    assert_eq!(
        lab.run(&["systemctl", "is-enabled", "virt-systemd-notify.socket"])
            .trim(),
        "enabled"
    );
    // AF_VSOCK can be bound here (DESIGN §6), so the socket unit starts.
    assert_eq!(
        lab.exec(&["systemctl", "is-active", "virt-systemd-notify.socket"])
            .stdout
            .trim_ascii(),
        b"active",
        "{}",
        lab.sh("systemctl status --no-pager virt-systemd-notify.socket 2>&1 || true")
    );
    // the listener runs under its sandboxing, on the socket systemd passes it
    lab.run(&["systemctl", "start", "virt-systemd-notify.service"]);
    let listening = lab.wait_for("the listener's start-up message", LONG, || {
        let log = lab.sh(
            "journalctl --no-pager -q -o cat -u virt-systemd-notify.service | grep -i listening || true",
        );
        (!log.trim().is_empty()).then_some(log)
    });
    assert!(listening.contains("socket-activated"), "{listening}");
    assert_eq!(
        lab.exec(&["systemctl", "is-active", "virt-systemd-notify.service"])
            .stdout
            .trim_ascii(),
        b"active"
    );
    // the control service: enabled by the preset, started by postinst, under its sandboxing
    assert_eq!(
        lab.run(&["systemctl", "is-enabled", "virt-systemd-control.service"])
            .trim(),
        "enabled"
    );
    lab.wait_for("the control service to run", LONG, || {
        lab.exec(&["systemctl", "is-active", "virt-systemd-control.service"])
            .stdout
            .starts_with(b"active")
            .then_some(())
    });
    let doctor = lab.exec(&["virt-systemd", "doctor"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
    for check in ["hook", "config"] {
        assert!(
            doctor
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["pass", check])),
            "doctor does not pass {check}:\n{doctor}"
        );
    }

    // --- a domain rewritten with the packaged CLI, registered by the packaged hook, without
    // restarting libvirtd by hand (postinst's reload made it see the hook)
    lab.write_file("/root/pkg.xml", domain_xml().as_bytes(), "644");
    lab.run(&[
        "virt-systemd",
        "rewrite",
        "/root/pkg.xml",
        "--in-place",
        "--no-vsock",
        "--hostname",
        NAME,
        "--machine-id",
    ]);
    let xml = String::from_utf8(lab.read_file("/root/pkg.xml")).unwrap();
    assert!(
        xml.contains("io.systemd.credential:system.hostname="),
        "{xml}"
    );
    lab.virsh(&["define", "/root/pkg.xml"]);
    lab.virsh(&["start", NAME]);
    let service = lab.wait_for("machine registered by the packaged hook", LONG, || {
        machine_prop(&lab, "Service")
    });
    assert_eq!(service, "virt-systemd");
    assert_eq!(machine_prop(&lab, "Class").as_deref(), Some("vm"));
    assert_eq!(
        machine_prop(&lab, "Id").as_deref(),
        Some(UUID.replace('-', "").as_str())
    );
    let pid = qemu_pid(&lab);

    // libvirtd restarted: the VM and its registration stay
    lab.run(&["systemctl", "restart", "libvirtd"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.virsh(&["domstate", NAME]).trim(), "running");
    assert_eq!(qemu_pid(&lab), pid);
    assert_eq!(
        machine_prop(&lab, "Service").as_deref(),
        Some("virt-systemd")
    );

    // --- man page and completions
    let man = lab.sh("MANWIDTH=80 man virt-systemd 2>&1 | sed 's/.\x08//g'");
    assert!(
        man.contains("virt-systemd - Wire libvirt domains") && man.contains("EXIT STATUS"),
        "man virt-systemd:\n{man}"
    );
    let man8 = lab.sh("MANWIDTH=80 man 8 virt-systemd-hook 2>&1 | sed 's/.\x08//g'");
    assert!(man8.contains("REGISTRATION"), "{man8}");
    let man5 = lab.sh("MANWIDTH=80 man 5 virt-systemd.toml 2>&1 | sed 's/.\x08//g'");
    assert!(man5.contains("libvirt_machine"), "{man5}");
    let complete = lab.run(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/virt-systemd && complete -p virt-systemd",
    ]);
    assert!(
        complete.starts_with("complete ") && complete.contains(" -F "),
        "{complete}"
    );
    let words = lab.run(&[
        "bash",
        "-c",
        "source /usr/share/bash-completion/completions/virt-systemd
         f=$(complete -p virt-systemd | sed 's/.*-F \\([^ ]*\\).*/\\1/')
         COMP_WORDS=(virt-systemd re); COMP_CWORD=1; COMP_LINE='virt-systemd re'; COMP_POINT=15
         $f virt-systemd re virt-systemd; printf '%s\\n' \"${COMPREPLY[@]}\"",
    ]);
    assert!(
        words.lines().any(|w| w == "rewrite"),
        "completion of 're': {words}"
    );

    // --- reinstall (an upgrade to the same version) keeps the administrator's edit
    lab.sh("sed -i 's/^#timeout_ms = 2000/timeout_ms = 1500/' /etc/virt-systemd/config.toml");
    dpkg(&lab, &["-i", "/root/virt-systemd.deb"]);
    assert!(lab
        .run(&["cat", "/etc/virt-systemd/config.toml"])
        .contains("\ntimeout_ms = 1500"));
    assert_eq!(lab.virsh(&["domstate", NAME]).trim(), "running");

    // the control service serves the running domain's socket
    let sock = format!("/run/virt-systemd/control/{UUID}");
    lab.wait_for("the control socket", LONG, || {
        lab.exec(&["test", "-S", &sock])
            .status
            .success()
            .then_some(())
    });

    // --- remove: the link goes first, the VM keeps running, its machine stays registered
    dpkg(&lab, &["-r", "virt-systemd"]);
    assert!(
        !lab.exec(&["systemctl", "is-active", "virt-systemd-control.service"])
            .status
            .success(),
        "prerm left the control service running"
    );
    assert!(!exists(&lab, LINK), "dpkg -r left {LINK}");
    assert!(!exists(&lab, "/usr/bin/virt-systemd"));
    assert!(
        exists(&lab, "/etc/virt-systemd/config.toml"),
        "dpkg -r keeps conffiles"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.virsh(&["domstate", NAME]).trim(), "running");
    assert_eq!(qemu_pid(&lab), pid, "QEMU was not restarted");
    lab.run(&["kill", "-0", &pid]);
    assert_eq!(
        machine_prop(&lab, "Service").as_deref(),
        Some("virt-systemd")
    );
    // libvirt no longer runs a hook: stopping the VM works and machined drops the machine
    // with QEMU's scope
    lab.virsh(&["destroy", NAME]);
    lab.wait_for("machine gone after destroy", LONG, || {
        machine_prop(&lab, "Service").is_none().then_some(())
    });
    lab.virsh(&["start", NAME]);
    assert_eq!(lab.virsh(&["domstate", NAME]).trim(), "running");
    lab.virsh(&["destroy", NAME]);

    // --- purge: nothing of the manifest is left
    dpkg(&lab, &["-P", "virt-systemd"]);
    let mut left = Vec::new();
    for (kind, path) in manifest_paths() {
        // shared directories (libvirt's hooks dirs) may stay; ours must go
        if kind == "dir" && !path.contains("virt-systemd") {
            continue;
        }
        if exists(&lab, &path) {
            left.push(path);
        }
    }
    for p in ["/etc/virt-systemd", "/run/virt-systemd"] {
        if exists(&lab, p) {
            left.push(p.to_string());
        }
    }
    assert!(left.is_empty(), "dpkg -P left: {left:?}");
    // (exits 1 when no unit file matches)
    let units = lab.exec(&[
        "systemctl",
        "list-unit-files",
        "--no-legend",
        "virt-systemd-notify.*",
        "virt-systemd-control.*",
    ]);
    assert!(
        String::from_utf8_lossy(&units.stdout).trim().is_empty(),
        "unit files left: {}",
        String::from_utf8_lossy(&units.stdout)
    );

    let errors = lab.sh(&format!(
        "journalctl --no-pager -q -u libvirtd -p err --since '{since}' | grep -i hook || true"
    ));
    assert!(
        errors.trim().is_empty(),
        "libvirtd errors about hooks:\n{errors}"
    );
}

#[test]
fn deb_install_use_remove_purge_trixie() {
    session("trixie");
}

#[test]
fn deb_install_use_remove_purge_bookworm() {
    session("bookworm");
}
