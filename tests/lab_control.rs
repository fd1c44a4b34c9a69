//! `machinectl poweroff|reboot|pause|resume|terminate` on a libvirt domain, through the
//! control address the hook registers and the control service serves (systemd ≥ 261: the sid
//! lab, which runs by default for this test), in both libvirt cgroup modes. The guest powers
//! off on the ACPI power button (tests/lab/guest/button-init.sh), as a systemd guest does.
//! trixie and bookworm (no control sockets) are covered by admin_lab.rs.

#[path = "lab/mod.rs"]
mod lab;

use lab::vsock::exists;
use lab::{Domain, Lab, Options, CT_BOOT, CT_LAB, NEWEST_SUITE};
use std::time::Duration;

const NAME: &str = "ctl";
const UUID: &str = "c0c0c0c0-1111-4222-8333-444444444444";
const SERIAL: &str = "/var/log/ctl-serial.log";
const SOCKET: &str = "/run/virt-systemd/control/c0c0c0c0-1111-4222-8333-444444444444";
const LONG: Duration = Duration::from_secs(180);

fn xml() -> String {
    let mut d = Domain::tiny(NAME, UUID, SERIAL);
    d.initrd = "button-initrd.img";
    // The power button exists only with ACPI; reboot keeps the domain (libvirt's default).
    d.xml()
        .replace("  </os>\n", "  </os>\n  <features><acpi/></features>\n")
        .replace(
            "<on_reboot>destroy</on_reboot>",
            "<on_reboot>restart</on_reboot>",
        )
}

fn setup(lab: &Lab) {
    lab.install_virt_systemd_hook();
    lab.start_control_service();
    lab.run(&[
        &format!("{CT_LAB}/guest/mkinitrd.sh"),
        &format!("{CT_BOOT}/button-initrd.img"),
        &format!("{CT_LAB}/guest/button-init.sh"),
    ]);
    lab.write_file("/root/ctl.xml", xml().as_bytes(), "644");
    // Persistent, so that libvirt keeps the reason of each stop.
    lab.virsh(&["-q", "define", "/root/ctl.xml"]);
}

fn boots(lab: &Lab) -> usize {
    let out = lab.exec(&["cat", SERIAL]);
    String::from_utf8_lossy(&out.stdout)
        .matches("BUTTONGUEST: waiting on")
        .count()
}

/// Start the domain; return once its guest listens for the power button.
fn start(lab: &Lab) -> u32 {
    lab.sh(&format!("rm -f {SERIAL}; virsh -q start {NAME}"));
    lab.wait_for("the guest to wait on the power button", LONG, || {
        (boots(lab) == 1).then_some(())
    });
    let pid = qemu_pid(lab);
    // registered by us, with QEMU as leader, and the control socket served
    lab.wait_for("the machine and its control socket", LONG, || {
        let leader = lab.exec(&[
            "busctl",
            "get-property",
            "org.freedesktop.machine1",
            &format!("/org/freedesktop/machine1/machine/{NAME}"),
            "org.freedesktop.machine1.Machine",
            "Leader",
        ]);
        let ok = String::from_utf8_lossy(&leader.stdout).trim() == format!("u {pid}")
            && lab.exec(&["test", "-S", SOCKET]).status.success();
        ok.then_some(())
    });
    pid
}

fn qemu_pid(lab: &Lab) -> u32 {
    lab.run(&["cat", &format!("/run/libvirt/qemu/{NAME}.pid")])
        .trim()
        .parse()
        .expect("QEMU's pid")
}

fn state(lab: &Lab) -> String {
    let o = lab.exec(&["virsh", "domstate", "--reason", NAME]);
    if !o.status.success() {
        return "gone".into();
    }
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn wait_state(lab: &Lab, want: &str) {
    lab.wait_for(&format!("domain state {want:?}"), LONG, || {
        (state(lab) == want).then_some(())
    });
}

fn machinectl(lab: &Lab, verb: &str) {
    lab.run(&["machinectl", verb, NAME]);
}

/// After a stop: no machine, no socket.
fn wait_gone(lab: &Lab) {
    lab.wait_for("the machine and its socket to go", LONG, || {
        let m = lab.exec(&["machinectl", "show", NAME]);
        (!m.status.success() && !exists(lab, SOCKET)).then_some(())
    });
}

fn verbs(cgroups: bool) {
    let Some(lab) = Lab::up_with(
        Options::new(NEWEST_SUITE)
            .libvirt_cgroups(cgroups)
            .by_default(),
    ) else {
        return;
    };
    setup(&lab);
    let since = lab.now();
    let pid = start(&lab);
    let log = lab.sh(&format!(
        "journalctl -q -o cat SYSLOG_IDENTIFIER=virt-systemd-hook DOMAIN={NAME} --since '{since}'"
    ));
    assert!(
        log.contains(&format!("registered machine {NAME} (Register, Varlink")),
        "hook log:\n{log}"
    );
    let idl = lab.run(&["varlinkctl", "introspect", SOCKET]);
    assert!(
        idl.contains("interface io.systemd.MachineInstance"),
        "{idl}"
    );
    assert!(idl.contains("method PowerOff()"), "{idl}");

    // Someone else than root: refused, the VM untouched.
    let o = lab.exec(&[
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "machinectl",
        "poweroff",
        NAME,
    ]);
    assert!(!o.status.success(), "nobody's poweroff succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(state(&lab), "running (booted)");
    assert_eq!(qemu_pid(&lab), pid);

    machinectl(&lab, "pause");
    wait_state(&lab, "paused (user)");
    machinectl(&lab, "resume");
    wait_state(&lab, "running (unpaused)");

    // reboot: the guest powers off on the button, libvirt resets it: a second boot in
    // the same QEMU, and the machine stays.
    machinectl(&lab, "reboot");
    lab.wait_for("a second boot", LONG, || (boots(&lab) == 2).then_some(()));
    assert_eq!(qemu_pid(&lab), pid, "reboot must keep QEMU");
    assert!(state(&lab).starts_with("running"), "{}", state(&lab));
    lab.run(&["machinectl", "show", NAME]);

    // The service restarted, then libvirtd: sockets reconciled, verbs work again.
    lab.sh("systemctl restart virt-systemd-control.service");
    lab.run(&["test", "-S", SOCKET]);
    machinectl(&lab, "pause");
    wait_state(&lab, "paused (user)");
    lab.sh("systemctl restart libvirtd.service");
    // Until the service has reconnected, machinectl gets NotConnected: ask again.
    lab.wait_for("resume after the libvirtd restart", LONG, || {
        lab.exec(&["machinectl", "resume", NAME])
            .status
            .success()
            .then_some(())
    });
    wait_state(&lab, "running (unpaused)");

    // poweroff = the power button: a clean guest shutdown.
    machinectl(&lab, "poweroff");
    wait_state(&lab, "shut off (shutdown)");
    wait_gone(&lab);
    let serial = String::from_utf8_lossy(&lab.read_file(SERIAL)).into_owned();
    assert!(serial.contains("BUTTONGUEST: power button"), "{serial}");

    // terminate = destroy.
    let pid = start(&lab);
    assert_ne!(pid, 0);
    machinectl(&lab, "terminate");
    wait_state(&lab, "shut off (destroyed)");
    wait_gone(&lab);

    // Stale entries from an earlier run go when the service starts.
    lab.sh("touch /run/virt-systemd/control/stale && systemctl restart virt-systemd-control");
    assert!(!exists(&lab, "/run/virt-systemd/control/stale"));

    let w = lab.hook_warnings(&since);
    assert!(w.trim().is_empty(), "hook warnings:\n{w}");
    let svc = lab.sh(&format!(
        "journalctl -q -o cat SYSLOG_IDENTIFIER=virt-systemd-control -p warning --since '{since}' || true"
    ));
    // Only the reconnect after the libvirtd restart may warn, and the calls it refused.
    for l in svc.lines() {
        assert!(
            l.contains("libvirt connection closed")
                || l.contains("cannot connect")
                || l.contains("not connected to libvirt"),
            "control service warned: {l}"
        );
    }
}

#[test]
fn machinectl_verbs_through_libvirt_with_libvirt_cgroups() {
    verbs(true);
}

#[test]
fn machinectl_verbs_through_libvirt_without_libvirt_cgroups() {
    verbs(false);
}
