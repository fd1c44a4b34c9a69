//! Session domains (qemu:///session) in the user's own machined (systemd ≥ 259: the sid lab,
//! which runs by default for this test). A lingering user's manager runs libvirtd as a user
//! service, as a desktop's would; that user's virsh starts the tiny guest; the hook, run by
//! the session daemon as the user, registers it with the user's machined, over varlink.

#[path = "lab/mod.rs"]
mod lab;

use lab::vsock::{exists, show, text};
use lab::{ct_bin, Domain, Lab, Options, CT_BOOT, CT_LAB, NEWEST_SUITE};
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

/// `virsh -c qemu:///session ARGS` as the user: its output (the test fails if it does).
fn user_virsh(lab: &Lab, args: &str) -> String {
    lab.sh(&as_user(&format!("virsh -c qemu:///session {args}")))
}

/// A domain's state and reason, as the user's virsh gives them.
fn user_domstate(lab: &Lab, name: &str) -> String {
    user_virsh(lab, &format!("domstate {name} --reason"))
        .trim()
        .to_string()
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
    // For the end: what the user's processes (the hook among them) wrote.
    lab.sh("touch /root/session-marker");
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
    user_virsh(&lab, &format!("-q define /home/{USER}/sess.xml"));
    user_virsh(&lab, &format!("-q start {NAME}"));
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
    // Its scope is the user manager's: systemctl --user shows it, with QEMU in it.
    let cg = lab.run(&["cat", &format!("/proc/{pid}/cgroup")]);
    assert!(
        cg.contains(&format!("/user@{UID}.service/")) && cg.contains(".scope"),
        "{cg}"
    );
    let unit = &m["Unit"];
    assert!(unit.ends_with(".scope"), "{m:?}");
    let scope = lab.sh(&as_user(&format!(
        "systemctl --user show {unit} -p ActiveState -p ControlGroup"
    )));
    assert!(scope.contains("ActiveState=active"), "{scope}");
    assert!(
        cg.trim_end().ends_with(
            scope
                .lines()
                .find_map(|l| l.strip_prefix("ControlGroup="))
                .unwrap_or("?")
        ),
        "QEMU not in {unit}: {cg} / {scope}"
    );
    // Root's machined never sees it; the hook wrote only in the user's runtime directory.
    let root = lab.run(&["machinectl", "list", "--no-legend"]);
    assert!(!root.contains(NAME), "{root}");
    let state = format!("{}/virt-systemd/domains/{UUID}.json", runtime());
    lab.run(&["test", "-f", &state]);
    let system = lab.sh("ls -A /run/virt-systemd/domains 2>/dev/null || true");
    assert!(!system.contains(UUID), "system state: {system}");

    // Stop: the machine goes, and the state with it.
    user_virsh(&lab, &format!("-q destroy {NAME}"));
    lab.wait_for("the machine to go", LONG, || {
        user_machine(&lab, NAME).is_none().then_some(())
    });
    lab.wait_for("the state to go", LONG, || {
        (!exists(&lab, &state)).then_some(())
    });
    // Started again after a session daemon restart: registered again, once.
    user_virsh(&lab, &format!("-q start {NAME}"));
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
    user_virsh(&lab, &format!("-q destroy {NAME}"));
    lab.wait_for("the machine to go", LONG, || {
        user_machine(&lab, NAME).is_none().then_some(())
    });

    // kill -9 of QEMU: the machine and the state go with it.
    user_virsh(&lab, &format!("-q start {NAME}"));
    lab.wait_for("the machine again", LONG, || user_machine(&lab, NAME));
    let pid = lab
        .run(&["cat", &format!("{}/libvirt/qemu/run/{NAME}.pid", runtime())])
        .trim()
        .to_string();
    lab.sh(&format!("kill -9 {pid}"));
    lab.wait_for("the machine to go after kill -9", LONG, || {
        user_machine(&lab, NAME).is_none().then_some(())
    });
    lab.wait_for("the state to go after kill -9", LONG, || {
        (!exists(&lab, &state)).then_some(())
    });

    user_control(&lab);
    user_space_vsock(&lab);
    login_session_daemon(&lab);

    let w = lab.hook_warnings(&since);
    assert!(w.trim().is_empty(), "hook warnings:\n{w}");
    // Nothing the user's processes (the session daemon, QEMU, the hook, our user units)
    // wrote lies outside the user's home and runtime directory.
    let outside = lab.sh(&format!(
        "find / \\( -path /proc -o -path /sys -o -path /dev -o -path /opt -o -path {rt} \
         -o -path /home/{USER} \\) -prune -o -user {USER} -newer /root/session-marker -print",
        rt = runtime()
    ));
    assert!(
        outside.trim().is_empty(),
        "written as {USER} elsewhere:\n{outside}"
    );
    // The user's manager goes before the container powers off (else the power-off waits).
    lab.sh(&format!(
        "loginctl disable-linger {USER}; loginctl terminate-user {USER}; systemctl stop user@{UID}.service || true"
    ));
}

/// The user's control service (the packaged user unit): machinectl --user's verbs act
/// through the user's libvirt.
fn user_control(lab: &Lab) {
    let bin = ct_bin("virt-systemd");
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("packaging/systemd/user/virt-systemd-control.service"),
    )
    .unwrap()
    .replace(
        "ExecStart=/usr/bin/virt-systemd ",
        &format!("ExecStart={bin} "),
    );
    lab.write_file(
        "/etc/systemd/user/virt-systemd-control.service",
        unit.as_bytes(),
        "644",
    );
    lab.sh(&as_user("systemctl --user daemon-reload"));
    lab.sh(&as_user(
        "systemctl --user enable --now virt-systemd-control.service",
    ));
    let pid_file = format!("{}/virt-systemd/control.pid", runtime());
    lab.wait_for("the user's control service", LONG, || {
        exists(lab, &pid_file).then_some(())
    });
    user_virsh(lab, &format!("-q start {NAME}"));
    lab.wait_for("the machine", LONG, || user_machine(lab, NAME));
    let socket = format!("{}/virt-systemd/control/{UUID}", runtime());
    lab.wait_for("its control socket", LONG, || {
        exists(lab, &socket).then_some(())
    });
    let intro = lab.sh(&as_user(&format!(
        "varlinkctl introspect {socket} io.systemd.MachineInstance"
    )));
    assert!(intro.contains("method PowerOff"), "{intro}");
    let domstate = || user_domstate(lab, NAME);
    lab.sh(&as_user(&format!("machinectl --user pause {NAME}")));
    assert!(domstate().starts_with("paused"), "{}", domstate());
    lab.sh(&as_user(&format!("machinectl --user resume {NAME}")));
    assert!(domstate().starts_with("running"), "{}", domstate());
    lab.sh(&as_user(&format!("machinectl --user terminate {NAME}")));
    lab.wait_for("the domain destroyed", LONG, || {
        (domstate() == "shut off (destroyed)").then_some(())
    });
    lab.wait_for("the machine to go", LONG, || {
        user_machine(lab, NAME).is_none().then_some(())
    });
    lab.wait_for("the control socket to go", LONG, || {
        (!exists(lab, &socket)).then_some(())
    });
    // Root's control service directory is not involved.
    assert!(!exists(lab, &format!("/run/virt-systemd/control/{UUID}")));

    // reboot and poweroff, with a guest that acts on the ACPI power button
    // (tests/lab/guest/button-init.sh, as in lab_control.rs).
    const BNAME: &str = "sessbtn";
    let serial = format!("/home/{USER}/{BNAME}-serial.log");
    lab.run(&[
        &format!("{CT_LAB}/guest/mkinitrd.sh"),
        &format!("{CT_BOOT}/button-initrd.img"),
        &format!("{CT_LAB}/guest/button-init.sh"),
    ]);
    let mut d = Domain::tiny(BNAME, "5e5e5e5e-4444-4222-8333-777777777777", &serial);
    d.initrd = "button-initrd.img";
    let xml = d
        .xml()
        .replace("  </os>\n", "  </os>\n  <features><acpi/></features>\n")
        .replace(
            "<on_reboot>destroy</on_reboot>",
            "<on_reboot>restart</on_reboot>",
        );
    lab.write_file(&format!("/home/{USER}/{BNAME}.xml"), xml.as_bytes(), "644");
    user_virsh(lab, &format!("-q define /home/{USER}/{BNAME}.xml"));
    user_virsh(lab, &format!("-q start {BNAME}"));
    let boots = || {
        String::from_utf8_lossy(&lab.exec(&["cat", &serial]).stdout)
            .matches("BUTTONGUEST: waiting on")
            .count()
    };
    lab.wait_for("the button guest up", LONG, || (boots() == 1).then_some(()));
    let bm = lab.wait_for("its machine", LONG, || user_machine(lab, BNAME));
    let bstate = || user_domstate(lab, BNAME);
    lab.sh(&as_user(&format!("machinectl --user reboot {BNAME}")));
    lab.wait_for("a second boot", LONG, || (boots() == 2).then_some(()));
    let again = lab.wait_for("its machine after reboot", LONG, || {
        user_machine(lab, BNAME)
    });
    assert_eq!(again["Leader"], bm["Leader"], "reboot kept QEMU");
    lab.sh(&as_user(&format!("machinectl --user poweroff {BNAME}")));
    lab.wait_for("the guest powered off", LONG, || {
        (bstate() == "shut off (shutdown)").then_some(())
    });
    lab.wait_for("its machine to go", LONG, || {
        user_machine(lab, BNAME).is_none().then_some(())
    });
}

/// A session daemon spawned by a client in a login session (`su -l` makes a real logind
/// session, `session-N.scope`), as a desktop's virsh or virt-manager does, instead of one
/// run by the user manager: QEMU starts in the login session's scope, the user manager moves
/// it into a scope of its own under user@UID.service when machined registers it.
fn login_session_daemon(lab: &Lab) {
    lab.sh(&as_user("systemctl --user stop vsd-libvirtd"));
    let libvirt_sock = format!("{}/libvirt/libvirt-sock", runtime());
    lab.wait_for("the user-service daemon to go", LONG, || {
        (!exists(lab, &libvirt_sock)).then_some(())
    });
    let start = lab.exec(&[
        "su",
        "-l",
        USER,
        "-c",
        &format!(
            "virsh -c qemu:///session -q start {NAME} && \
             grep '^0::' /proc/$(pgrep -u {USER} -x libvirtd)/cgroup"
        ),
    ]);
    assert!(
        start.status.success(),
        "start from a login session: {}",
        show(&start)
    );
    let daemon_cgroup = text(&start.stdout);
    assert!(
        daemon_cgroup.contains("/session-") && daemon_cgroup.contains(".scope"),
        "the spawned daemon is not in a login session: {daemon_cgroup}"
    );
    let m = lab.wait_for("the machine (login-session daemon)", LONG, || {
        user_machine(lab, NAME)
    });
    let pid = lab
        .run(&["cat", &format!("{}/libvirt/qemu/run/{NAME}.pid", runtime())])
        .trim()
        .to_string();
    assert_eq!(m["Leader"], pid, "{m:?}");
    let cg = lab.run(&["cat", &format!("/proc/{pid}/cgroup")]);
    assert!(
        cg.contains(&format!("/user@{UID}.service/")) && cg.contains(".scope"),
        "QEMU of a login-session daemon: {cg}"
    );
    lab.run(&[
        "su",
        "-l",
        USER,
        "-c",
        &format!("virsh -c qemu:///session -q destroy {NAME}"),
    ]);
    lab.wait_for("the machine to go (login-session daemon)", LONG, || {
        user_machine(lab, NAME).is_none().then_some(())
    });
}

const VNAME: &str = "sessvsock";
const VUUID: &str = "5e5e5e5e-2222-4222-8333-555555555555";
/// The guest's STATUS= (guest/vsock-init.sh).
const STATUS: &str = "vsd-vsock guest up, echo service on vsock port 7000";

/// A session user without /dev/vhost-vsock: `enable` sets the domain up for the user unit's
/// backend and says what to run; a start before that fails and leaves nothing; after it,
/// the guest's READY=1 reaches the user's `wait-ready` and `vsock-proxy` reaches a guest
/// port, all as the user.
fn user_space_vsock(lab: &Lab) {
    let bin = ct_bin("virt-systemd");
    let dir = format!("{}/virt-systemd/vsock/{VNAME}", runtime());
    let serial = format!("/home/{USER}/{VNAME}-serial.log");
    // Debian's vhost-device-vsock (sid), and the packaged user units pointing at the
    // binaries under test.
    lab.run(&["test", "-x", "/usr/bin/vhost-device-vsock"]);
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/user");
    for u in [
        "virt-systemd-vsock@.service",
        "virt-systemd-notify@.socket",
        "virt-systemd-notify@.service",
    ] {
        let text = std::fs::read_to_string(units.join(u))
            .unwrap()
            .replace("/usr/bin/virt-systemd ", &format!("{bin} "));
        lab.write_file(&format!("/etc/systemd/user/{u}"), text.as_bytes(), "644");
    }
    lab.sh(&as_user("systemctl --user daemon-reload"));
    // doctor as the user: the session checks pass (user machined, the user-space backend).
    let doc = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!("{bin} -c qemu:///session doctor --json")),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&doc.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", show(&doc)));
    let verdict = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["verdict"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(verdict("session").as_deref(), Some("pass"), "{report:#}");
    assert_eq!(
        verdict("vhost-vsock").as_deref(),
        Some("pass"),
        "{report:#}"
    );
    assert!(
        doc.status.success(),
        "doctor as the user failed a check: {report:#}"
    );
    lab.run(&[
        &format!("{CT_LAB}/guest/vsock-initrd.sh"),
        &format!("{CT_BOOT}/vsock-initrd.img"),
    ]);
    let xml = Domain {
        name: VNAME,
        uuid: VUUID,
        memory_mib: 256,
        vcpus: 1,
        initrd: "vsock-initrd.img",
        cmdline: "console=ttyS0 panic=-1 loglevel=4",
        serial: &serial,
        vhost: None,
    }
    .xml();
    lab.write_file(&format!("/home/{USER}/{VNAME}.xml"), xml.as_bytes(), "644");
    user_virsh(lab, &format!("-q define /home/{USER}/{VNAME}.xml"));

    let en = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!("{bin} -c qemu:///session enable {VNAME}")),
    ]);
    let said = text(&en.stderr);
    assert!(en.status.success(), "enable: {}", show(&en));
    assert!(
        said.contains(&format!(
            "systemctl --user enable --now virt-systemd-vsock@{VNAME}.service"
        )),
        "enable must say what to run: {said}"
    );
    let live = user_virsh(lab, &format!("dumpxml --inactive {VNAME}"));
    assert!(
        live.contains(&format!("socket,id=vsdvsock,path={dir}/vhost.sock"))
            && live.contains("vhost-user-vsock-pci")
            && !live.contains("<vsock"),
        "{live}"
    );

    // Started before the backend runs: QEMU cannot connect, the start fails, nothing stays.
    let failed = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!("virsh -c qemu:///session start {VNAME}")),
    ]);
    assert!(
        !failed.status.success(),
        "started without its backend: {}",
        show(&failed)
    );
    let vstate = format!("{}/virt-systemd/domains/{VUUID}.json", runtime());
    assert!(
        user_machine(lab, VNAME).is_none(),
        "a failed start left a machine"
    );
    assert!(!exists(lab, &vstate), "a failed start left state");

    // What enable said to run.
    lab.sh(&as_user(&format!(
        "systemctl --user enable --now virt-systemd-vsock@{VNAME}.service"
    )));
    lab.wait_for("the backend's vhost-user socket", LONG, || {
        exists(lab, &format!("{dir}/vhost.sock")).then_some(())
    });
    user_virsh(lab, &format!("-q start {VNAME}"));
    let m = lab.wait_for("the vsock domain's machine", LONG, || {
        user_machine(lab, VNAME)
    });
    assert_eq!(m["Class"], "vm", "{m:?}");
    let ssh_address = lab.sh(&as_user(&format!(
        "busctl --user get-property org.freedesktop.machine1 /org/freedesktop/machine1/machine/{VNAME} \
         org.freedesktop.machine1.Machine SSHAddress 2>&1 || true"
    )));
    assert!(
        ssh_address.contains(&format!("vsock-mux{dir}/vm.vsock")),
        "SSH address: {ssh_address}"
    );

    let wait = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!(
            "{bin} -c qemu:///session wait-ready {VNAME} --timeout 300"
        )),
    ]);
    let diag = || {
        lab.sh(&format!(
            "tail -c 4000 {serial}; journalctl -q --no-pager -n 40 _UID={UID} || true"
        ))
    };
    assert!(
        wait.status.success(),
        "wait-ready: {}\n{}",
        show(&wait),
        diag()
    );
    assert_eq!(text(&wait.stdout).trim(), STATUS);
    let readiness = format!("{}/virt-systemd/domains/{VUUID}.notify.json", runtime());
    assert!(
        exists(lab, &readiness),
        "readiness not in the user's runtime directory"
    );
    assert!(
        !exists(
            lab,
            &format!("/run/virt-systemd/domains/{VUUID}.notify.json")
        ),
        "readiness in root's directory"
    );
    let status = lab.sh(&as_user(&format!(
        "{bin} -c qemu:///session status --json {VNAME}"
    )));
    let st: serde_json::Value = serde_json::from_str(&status).unwrap();
    let row = &st["domains"][0];
    assert_eq!(row["readiness"]["ready"], true, "{status}");
    assert_eq!(row["registered"], true, "the user's machined: {status}");
    assert_eq!(row["vsock"], true, "{status}");
    assert!(row["drift"].as_array().unwrap().is_empty(), "{status}");

    // Host → guest port 7000 (the guest's echo service) through the user's backend.
    let proxy = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!(
            "sh -c 'out=$(mktemp) && \
             (echo ping-from-user; i=0; \
              while ! grep -q VSDVSOCK-ECHO \"$out\" && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done) \
             | timeout 120 {bin} vsock-proxy --uds {dir}/vm.vsock 7000 > \"$out\"; \
             rc=$?; cat \"$out\"; rm -f \"$out\"; exit $rc'"
        )),
    ]);
    let got = text(&proxy.stdout);
    assert!(
        proxy.status.success() && got.contains("VSDVSOCK-ECHO ping-from-user"),
        "vsock-proxy as the user: {}\n{}",
        show(&proxy),
        diag()
    );

    // virt-systemd ssh as the user: the real ssh, through the backend, to the guest's port
    // 22 (the echo service: ssh gets its greeting as a non-SSH banner and gives up).
    let ssh = lab.exec(&[
        "sh",
        "-c",
        &as_user(&format!(
            "timeout 180 {bin} -c qemu:///session ssh {VNAME} -- -v -o BatchMode=yes true"
        )),
    ]);
    let said = text(&ssh.stderr);
    eprintln!(
        "session: virt-systemd ssh as {USER}: {}",
        said.lines()
            .filter(|l| l.contains("banner line") || l.contains("proxy command"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert!(
        said.contains(&format!("vsock-proxy --uds '{dir}/vm.vsock' 22"))
            && said.contains("banner line 0: VSDVSOCK-HELLO")
            && said.contains("VSDVSOCK-ECHO SSH-2.0-"),
        "virt-systemd ssh as the user: {}\n{}",
        show(&ssh),
        diag()
    );

    user_virsh(lab, &format!("-q destroy {VNAME}"));
    lab.wait_for("the vsock machine to go", LONG, || {
        user_machine(lab, VNAME).is_none().then_some(())
    });
    lab.wait_for("its state to go", LONG, || {
        (!exists(lab, &vstate)).then_some(())
    });

    // disable takes out what enable put in: the device and its shared memory too.
    lab.sh(&as_user(&format!(
        "{bin} -c qemu:///session disable {VNAME}"
    )));
    let after = user_virsh(lab, &format!("dumpxml --inactive {VNAME}"));
    assert!(
        !after.contains("vsdvsock")
            && !after.contains("memoryBacking")
            && !after.contains("virt-systemd"),
        "{after}"
    );
}
