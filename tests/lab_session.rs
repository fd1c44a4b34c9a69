//! Session domains (qemu:///session) in the user's own machined (systemd ≥ 259: the sid lab,
//! which runs by default for this test). A lingering user's manager runs libvirtd as a user
//! service, as a desktop's would; that user's virsh starts the tiny guest; the hook, run by
//! the session daemon as the user, registers it with the user's machined, over varlink.

#[path = "lab/mod.rs"]
mod lab;

use lab::vsock::exists;
use lab::{Domain, Lab, Options, NEWEST_SUITE};
use std::time::Duration;

const USER: &str = "vsdsess";
const UID: u32 = 1600;
const NAME: &str = "sessvm";
const UUID: &str = "5e5e5e5e-1111-4222-8333-444444444444";
const LONG: Duration = Duration::from_secs(180);

fn runtime() -> String {
    format!("/run/user/{UID}")
}

/// A command as the user, with its runtime directory and bus.
fn as_user(cmd: &str) -> String {
    format!(
        "runuser -u {USER} -- env XDG_RUNTIME_DIR={rt} DBUS_SESSION_BUS_ADDRESS=unix:path={rt}/bus \
         HOME=/home/{USER} {cmd}",
        rt = runtime()
    )
}

/// The user's machine NAME as `machinectl --user show` gives it (`None`: no such machine).
fn user_machine(lab: &Lab, name: &str) -> Option<std::collections::HashMap<String, String>> {
    let out = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!(
            "machinectl --user show {name} -p Name -p Class -p Service -p Leader -p Id -p Unit"
        )),
    ]);
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn session_domain_in_the_users_machined() {
    let Some(lab) = Lab::up_with(Options::new(NEWEST_SUITE).by_default()) else {
        return;
    };
    lab.install_virt_systemd_hook();
    lab.sh(&format!(
        "useradd -m -u {UID} {USER} && loginctl enable-linger {USER}"
    ));
    let sock = format!("{}/systemd/machine/io.systemd.Machine", runtime());
    lab.wait_for("the user's manager and its machined socket", LONG, || {
        lab.exec(&["test", "-S", &sock])
            .status
            .success()
            .then_some(())
    });
    // libvirtd as a user service of that manager (how QEMU ends up inside user@UID.service).
    lab.sh(&as_user(
        "systemd-run --user -q --unit=vsd-libvirtd /usr/sbin/libvirtd --timeout=0",
    ));
    let xml = Domain::tiny(NAME, UUID, &format!("/home/{USER}/serial.log")).xml();
    lab.write_file(&format!("/home/{USER}/sess.xml"), xml.as_bytes(), "644");
    let since = lab.now();
    // Its socket first: a virsh before it would spawn a daemon of its own.
    let libvirt_sock = format!("{}/libvirt/libvirt-sock", runtime());
    lab.wait_for("the session daemon's socket", LONG, || {
        lab.exec(&["test", "-S", &libvirt_sock])
            .status
            .success()
            .then_some(())
    });
    lab.sh(&as_user(&format!(
        "virsh -c qemu:///session -q define /home/{USER}/sess.xml"
    )));
    lab.sh(&as_user(&format!(
        "virsh -c qemu:///session -q start {NAME}"
    )));
    let pid: u32 = lab
        .run(&["cat", &format!("{}/libvirt/qemu/run/{NAME}.pid", runtime())])
        .trim()
        .parse()
        .unwrap();
    let hook_log = || {
        lab.sh(&format!(
            "journalctl -q -o cat SYSLOG_IDENTIFIER=virt-systemd-hook --since '{since}' || true"
        ))
    };
    let m = (0..120)
        .find_map(|_| {
            let m = user_machine(&lab, NAME);
            if m.is_none() {
                std::thread::sleep(Duration::from_millis(500));
            }
            m
        })
        .unwrap_or_else(|| panic!("not in the user's machined; hook said:\n{}", hook_log()));
    assert!(hook_log().contains(&format!(
        "registered machine {NAME} with the user's machined (uid {UID})"
    )));
    assert_eq!(m["Class"], "vm", "{m:?}");
    assert_eq!(m["Service"], "virt-systemd", "{m:?}");
    assert_eq!(m["Leader"], pid.to_string(), "{m:?}");
    assert_eq!(m["Id"], UUID.replace('-', ""), "{m:?}");
    // Its scope is the user manager's.
    let cg = lab.run(&["cat", &format!("/proc/{pid}/cgroup")]);
    assert!(
        cg.contains(&format!("/user@{UID}.service/")) && cg.contains(".scope"),
        "{cg}"
    );
    // Root's machined never sees it; the hook wrote only in the user's runtime directory.
    let root = lab.run(&["machinectl", "list", "--no-legend"]);
    assert!(!root.contains(NAME), "{root}");
    let state = format!("{}/virt-systemd/domains/{UUID}.json", runtime());
    lab.run(&["test", "-f", &state]);
    let system = lab.sh("ls -A /run/virt-systemd/domains 2>/dev/null || true");
    assert!(!system.contains(UUID), "system state: {system}");

    // Stop: the machine goes, and the state with it.
    lab.sh(&as_user(&format!(
        "virsh -c qemu:///session -q destroy {NAME}"
    )));
    lab.wait_for("the machine to go", LONG, || {
        user_machine(&lab, NAME).is_none().then_some(())
    });
    lab.wait_for("the state to go", LONG, || {
        (!exists(&lab, &state)).then_some(())
    });
    // Started again after a session daemon restart: registered again, once.
    lab.sh(&as_user(&format!(
        "virsh -c qemu:///session -q start {NAME}"
    )));
    lab.wait_for("the machine again", LONG, || user_machine(&lab, NAME));
    lab.sh(&as_user("systemctl --user restart vsd-libvirtd"));
    lab.wait_for("the session daemon back", LONG, || {
        lab.exec(&["test", "-S", &libvirt_sock])
            .status
            .success()
            .then_some(())
    });
    lab.wait_for("the domain seen again", LONG, || {
        lab.exec(&[
            "sh",
            "-c",
            &as_user("virsh -c qemu:///session -q domstate sessvm"),
        ])
        .status
        .success()
        .then_some(())
    });
    let m = user_machine(&lab, NAME);
    assert!(m.is_some(), "reconnect lost the machine");
    lab.sh(&as_user(&format!(
        "virsh -c qemu:///session -q destroy {NAME}"
    )));
    lab.wait_for("the machine to go", LONG, || {
        user_machine(&lab, NAME).is_none().then_some(())
    });
    let w = lab.hook_warnings(&since);
    assert!(w.trim().is_empty(), "hook warnings:\n{w}");
}
