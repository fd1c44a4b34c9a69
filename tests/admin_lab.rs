//! The administrator's commands against real libvirtd, QEMU (TCG) and systemd-machined in
//! the lab (tests/lab/README.md), trixie and bookworm: `doctor` before and after
//! `hook-install` and a daemon restart, and with machined stopped; `enable` on the default
//! URI (qemu:///system as root) → `virsh dumpxml` shows the entries → start → QEMU gets the
//! OEM strings and `status` shows the machine; `enable` on a running domain is pending until
//! the next start; transient, unknown and unprivileged → their exit codes; `disable` →
//! libvirt's definition is byte for byte what it was; a session domain (qemu:///session,
//! libvirtd spawned by the user's virsh) runs with the hook leaving it alone.
//!
//! The lab has no /dev/vhost-vsock, so `enable` leaves the vsock device out there (that path
//! is checked too) and no CID can be shown; a CID in `status` is covered by the test driver
//! (tests/admin_libvirt.rs).

#[path = "lab/mod.rs"]
mod lab;

use lab::{ct_bin, Lab, HOOK_LINK};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

const UUID: &str = "7d2e1a2b-7d1f-4c57-9c4e-00000000a001";
/// Waits for what must happen: only bounds a hang (TCG guests on a loaded machine are slow).
const LONG: Duration = Duration::from_secs(180);

fn xml(name: &str, uuid: &str) -> String {
    lab::Domain::tiny(
        name,
        uuid,
        &format!("/var/log/libvirt/qemu/{name}-serial.log"),
    )
    .xml()
}

/// `virt-systemd ARGS` in the container (no -c: libvirt's default URI, qemu:///system).
fn vs(lab: &Lab, args: &[&str]) -> Output {
    let mut argv = vec![ct_bin("virt-systemd")];
    argv.extend(args.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.exec(&argv)
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn doctor(lab: &Lab) -> (Option<i32>, Value) {
    let o = vs(lab, &["doctor", "--json"]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}{}", out(&o), err(&o)));
    (o.status.code(), v)
}

fn verdict(v: &Value, id: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map_or("absent".into(), |c| {
            c["verdict"].as_str().unwrap().to_string()
        })
}

fn status(lab: &Lab, name: &str) -> (Value, Value) {
    let o = vs(lab, &["status", "--json", name]);
    assert_eq!(o.status.code(), Some(0), "status: {}", err(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = v["domains"][0].clone();
    (v, d)
}

fn session(suite: &str) {
    let Some(lab) = Lab::up(suite) else {
        return;
    };
    let bookworm = suite == "bookworm";
    let sid = suite == "sid";

    // doctor on a host without the hook: fail (exit 1), the rest judged.
    let (code, v) = doctor(&lab);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(verdict(&v, "hook"), "fail", "{v:#}");
    assert_eq!(verdict(&v, "libvirt"), "pass", "{v:#}");
    assert_eq!(verdict(&v, "systemd"), "pass", "{v:#}");
    assert_eq!(verdict(&v, "machined"), "pass", "{v:#}");
    let machined = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "machined")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    // systemd 262 (sid) has RegisterMachineEx; 257 and 252 do not (DESIGN §5).
    assert_eq!(
        machined.contains("RegisterMachineEx available"),
        sid,
        "{machined}"
    );
    assert_eq!(verdict(&v, "vhost-vsock"), "warn", "{v:#}");
    assert_eq!(verdict(&v, "config"), "pass", "{v:#}");
    // machinectl's verbs harm libvirt VMs on every systemd here (none serves a control socket).
    assert_eq!(verdict(&v, "machinectl"), "warn", "{v:#}");
    if bookworm {
        // systemd 252 has no systemd-ssh-proxy (256+).
        assert_eq!(verdict(&v, "ssh-proxy"), "warn", "{v:#}");
    }
    lab::announce(&format!(
        "lab {suite}: doctor without hook:\n{}",
        out(&vs(&lab, &["doctor"]))
    ));

    // hook-install: the link, and advice; the running libvirtd has not read it yet.
    let o = vs(&lab, &["hook-install"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains("systemctl restart libvirtd"),
        "{}",
        out(&o)
    );
    assert_eq!(
        lab.run(&["readlink", HOOK_LINK]).trim(),
        ct_bin("virt-systemd-hook")
    );
    let (code, v) = doctor(&lab);
    assert_eq!(verdict(&v, "hook"), "pass", "{v:#}");
    assert_eq!(verdict(&v, "hook-loaded"), "warn", "{v:#}");
    assert_eq!(code, Some(0), "only warnings: {v:#}");
    // libvirtd's start time is whole seconds of clock ticks: keep the restart in a later second.
    std::thread::sleep(Duration::from_millis(1100));
    lab.run(&["systemctl", "restart", "libvirtd"]);
    let (code, v) = doctor(&lab);
    assert_eq!(verdict(&v, "hook-loaded"), "pass", "{v:#}");
    assert_eq!(code, Some(0), "{v:#}");

    // A persistent, shut-off domain.
    lab.write_file("/root/vsd-adm.xml", xml("vsd-adm", UUID).as_bytes(), "644");
    lab.virsh(&["define", "/root/vsd-adm.xml"]);
    let original = lab.virsh(&["dumpxml", "--inactive", "--security-info", "vsd-adm"]);

    // Dry run: a diff, nothing changed.
    let o = vs(
        &lab,
        &[
            "enable",
            "vsd-adm",
            "-n",
            "--hostname",
            "adm",
            "--machine-id",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).starts_with("--- vsd-adm (current definition)\n"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("+      <entry>io.systemd.credential:system.hostname=adm</entry>"),
        "{}",
        out(&o)
    );
    assert_eq!(
        lab.virsh(&["dumpxml", "--inactive", "--security-info", "vsd-adm"]),
        original
    );

    // Enable: defined; no vhost-vsock here, so no vsock device, and a note.
    let o = vs(
        &lab,
        &["enable", "vsd-adm", "--hostname", "adm", "--machine-id"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "domain 'vsd-adm' enabled\n");
    assert!(
        err(&o).contains("leaving the vsock device out"),
        "{}",
        err(&o)
    );
    let dump = lab.virsh(&["dumpxml", "--inactive", "vsd-adm"]);
    for want in [
        "<entry>io.systemd.credential:system.hostname=adm</entry>",
        &format!(
            "<entry>io.systemd.credential:system.machine_id={}</entry>",
            UUID.replace('-', "")
        ),
        "<entry>io.systemd.credential:vmm.notify_socket=vsock-stream:2:8742</entry>",
        "<smbios mode='sysinfo'/>",
        "urn:virt-systemd:domain:1",
    ] {
        assert!(dump.contains(want), "{want} missing:\n{dump}");
    }
    assert!(!dump.contains("<vsock"), "{dump}");
    // Again: nothing to change, nothing defined.
    let o = vs(&lab, &["enable", "vsd-adm"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("nothing to change"), "{}", err(&o));
    let (_, d) = status(&lab, "vsd-adm");
    assert_eq!(d["enabled"], true);
    assert_eq!(d["running"], false);
    assert_eq!(d["machine"], Value::Null);
    assert_eq!(d["drift"], serde_json::json!([]));

    // Start: QEMU gets the OEM strings, the hook registers, status shows the machine.
    lab.virsh(&["start", "vsd-adm"]);
    let pid = lab
        .run(&["cat", "/run/libvirt/qemu/vsd-adm.pid"])
        .trim()
        .to_string();
    let argv = lab.run(&["sh", "-c", &format!("tr '\\0' ' ' < /proc/{pid}/cmdline")]);
    assert!(
        argv.contains("io.systemd.credential:system.hostname=adm"),
        "QEMU argv: {argv}"
    );
    let d = lab.wait_for("status shows the machine", LONG, || {
        let (_, d) = status(&lab, "vsd-adm");
        (d["machine"]["state"] == "running").then_some(d)
    });
    assert_eq!(d["machine"]["name"], "vsd-adm");
    assert_eq!(d["machine"]["service"], "virt-systemd");
    assert_eq!(d["machine"]["class"], "vm");
    assert_eq!(d["machine"]["id"], UUID.replace('-', ""));
    assert_eq!(d["machine"]["leader"].to_string(), pid);
    assert_eq!(d["registered"], true);
    assert_eq!(d["running"], true);
    assert_eq!(d["state"], "running");
    assert_eq!(d["restart_pending"], false);
    assert_eq!(d["vsock_cid"], Value::Null);
    let table = out(&vs(&lab, &["status"]));
    assert!(table.contains("vsd-adm (running)"), "{table}");

    // Enable while running: defined, pending until the next start.
    let o = vs(&lab, &["enable", "vsd-adm", "--credential", "adm.extra=1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o).contains("takes effect at its next start"),
        "{}",
        err(&o)
    );
    let (_, d) = status(&lab, "vsd-adm");
    assert_eq!(d["restart_pending"], true, "{d}");

    // Error classes against the real daemon.
    lab.write_file(
        "/root/vsd-tr.xml",
        xml("vsd-tr", "7d2e1a2b-7d1f-4c57-9c4e-00000000a002").as_bytes(),
        "644",
    );
    lab.virsh(&["create", "/root/vsd-tr.xml"]);
    let o = vs(&lab, &["enable", "vsd-tr"]);
    assert_eq!(o.status.code(), Some(14), "{}", err(&o));
    lab.virsh(&["destroy", "vsd-tr"]);
    let o = vs(&lab, &["disable", "no-such-domain"]);
    assert_eq!(o.status.code(), Some(10), "{}", err(&o));
    let o = vs(
        &lab,
        &["-c", "qemu+unix:///system?socket=/nonexistent", "status"],
    );
    assert_eq!(o.status.code(), Some(11), "{}", err(&o));
    let o = lab.exec(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &ct_bin("virt-systemd"),
        "-c",
        "qemu:///system",
        "enable",
        "vsd-adm",
    ]);
    if err(&o).contains("failed to execute") {
        lab::announce(&format!(
            "lab {suite}: nobody cannot run the binary; permission case not checked: {}",
            err(&o)
        ));
    } else {
        assert_eq!(o.status.code(), Some(12), "{}", err(&o));
    }

    // Disable (after a stop): libvirt's definition is what it was before enable.
    lab.virsh(&["destroy", "vsd-adm"]);
    let o = vs(&lab, &["disable", "vsd-adm"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "domain 'vsd-adm' disabled\n");
    assert_eq!(
        lab.virsh(&["dumpxml", "--inactive", "--security-info", "vsd-adm"]),
        original
    );

    // machined stopped (and kept from being activated): doctor fails on it, status works.
    lab.virsh(&["start", "vsd-adm"]);
    lab.run(&["systemctl", "mask", "--runtime", "systemd-machined.service"]);
    lab.run(&["systemctl", "stop", "systemd-machined.service"]);
    let (code, v) = doctor(&lab);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(verdict(&v, "machined"), "fail", "{v:#}");
    let (v, d) = status(&lab, "vsd-adm");
    assert!(v["machined"].is_string(), "{v:#}");
    assert_eq!(d["machine"], Value::Null);
    assert_eq!(d["running"], true);
    lab.run(&[
        "systemctl",
        "unmask",
        "--runtime",
        "systemd-machined.service",
    ]);
    lab.virsh(&["destroy", "vsd-adm"]);

    // machinectl's verbs on a VM the hook registered: each ends it without a guest shutdown,
    // as doctor and status say (src/machinectl.rs). Should one start doing what it says, the
    // warning is stale and this fails.
    lab.run(&["systemctl", "start", "systemd-machined.service"]);
    let mut seen = Vec::new();
    for verb in ["poweroff", "reboot", "terminate", "kill"] {
        lab.virsh(&["start", "vsd-adm"]);
        let d = lab.wait_for("the hook registered vsd-adm", LONG, || {
            let (_, d) = status(&lab, "vsd-adm");
            (d["machine"]["state"] == "running").then_some(d)
        });
        assert_eq!(d["machinectl"], "signals", "{d}");
        if verb == "poweroff" {
            let table = out(&vs(&lab, &["status"]));
            assert!(
                table.contains("vsd-adm: machinectl poweroff|reboot|terminate|kill end"),
                "{table}"
            );
        }
        let pid = lab.run(&["cat", "/run/libvirt/qemu/vsd-adm.pid"]);
        let o = lab.exec(&["machinectl", verb, "vsd-adm"]);
        assert!(o.status.success(), "machinectl {verb}: {}", err(&o));
        let state = lab.wait_for(
            &format!("vsd-adm stopped by machinectl {verb}"),
            LONG,
            || {
                let s = lab.virsh(&["domstate", "--reason", "vsd-adm"]);
                s.starts_with("shut off").then(|| s.trim().to_string())
            },
        );
        // poweroff is a kill: libvirt saw QEMU die. reboot did not bring it back.
        if verb == "poweroff" {
            assert_eq!(state, "shut off (crashed)", "machinectl {verb}");
        }
        let qemu_gone = !lab.exec(&["kill", "-0", pid.trim()]).status.success();
        assert!(
            qemu_gone,
            "machinectl {verb}: QEMU {} still runs",
            pid.trim()
        );
        seen.push(format!("machinectl {verb} → {state}"));
    }
    lab::announce(&format!("lab {suite}: {}", seen.join("; ")));

    // A session daemon (qemu:///session, spawned by the user's virsh) runs the same hook as
    // its user: the VM runs, the hook says once that it is not registered, and nothing of the
    // system's is touched (no machine, no state file, no warning).
    let since = lab.now();
    lab.sh("useradd -m -u 1500 vsduser && mkdir -p /run/user/1500 && \
         chown vsduser: /run/user/1500 && chmod 700 /run/user/1500");
    let sess_uuid = "7d2e1a2b-7d1f-4c57-9c4e-00000000a003";
    lab.write_file(
        "/home/vsduser/vsd-sess.xml",
        xml("vsd-sess", sess_uuid)
            .replace("/var/log/libvirt/qemu/", "/home/vsduser/")
            .as_bytes(),
        "644",
    );
    let user_virsh = |args: &str| {
        lab.sh(&format!(
            "runuser -u vsduser -- env XDG_RUNTIME_DIR=/run/user/1500 HOME=/home/vsduser \
             virsh -c qemu:///session {args}"
        ))
    };
    user_virsh("define /home/vsduser/vsd-sess.xml");
    user_virsh("start vsd-sess");
    let logged = lab.wait_for("the session hook's line", LONG, || {
        let l = lab.sh(&format!(
            "journalctl --no-pager -q -o cat SYSLOG_IDENTIFIER=virt-systemd-hook \
             DOMAIN=vsd-sess --since '{since}' || true"
        ));
        (!l.trim().is_empty()).then_some(l)
    });
    // No user manager runs for this user (runuser, no login): no user machined either.
    assert!(
        logged.trim().starts_with(
            "session domain: not registered: no per-user systemd-machined at /run/user/1500/"
        ),
        "{logged}"
    );
    assert_eq!(user_virsh("domstate vsd-sess").trim(), "running");
    let machines = lab.run(&["machinectl", "list", "--no-legend"]);
    assert!(!machines.contains("vsd-sess"), "{machines}");
    assert!(
        !lab.exec(&[
            "test",
            "-e",
            &format!("/run/virt-systemd/domains/{sess_uuid}.json")
        ])
        .status
        .success(),
        "a session hook wrote the system's state"
    );
    user_virsh("destroy vsd-sess");
    let warnings = lab.hook_warnings(&since);
    assert!(warnings.trim().is_empty(), "{warnings}");

    // Uninstall the hook: doctor fails on it again.
    let o = vs(&lab, &["hook-install", "--uninstall"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!lab.exec(&["test", "-L", HOOK_LINK]).status.success());
    assert_eq!(verdict(&doctor(&lab).1, "hook"), "fail");
}

#[test]
fn admin_commands_trixie() {
    session("trixie");
}

#[test]
fn admin_commands_bookworm() {
    session("bookworm");
}

/// Not gating (LAB_SUITES=sid): systemd 262, RegisterMachineEx.
#[test]
fn admin_commands_sid() {
    session("sid");
}
