//! Live migration between the two hosts of the two-host lab (`tests/lab/pair-up.sh`), with
//! the virt-systemd hook installed on both: the tiny guest goes a → b → a and a → b again,
//! and three migrations fail on the way (the destination's hook refuses, the job is cancelled
//! with `virsh domjobabort`, the destination's QEMU is killed). After every step, on each host:
//! the machine machined knows (leader = that host's QEMU, UUID, service, class), the hook's
//! state files, libvirt's domain state, and the exact hook calls libvirt made (a logging hook
//! beside ours records `OP SUBOP EXTRA`). No VM is killed on the source by a failed migration,
//! nothing is left on either host, no hook warning in either journal.
//!
//! One pair session for all of it, per libvirt cgroup mode: without cgroups QEMU stays in
//! libvirtd.service and the hook creates its scope; with them libvirt registers
//! `qemu-N-NAME` on every start, the destination's included, and the hook takes its place.
//! trixie runs by default; bookworm and sid with `LAB_SUITES` (see `lab/pair.rs`). Where
//! machined takes a control address (systemd ≥ 261: sid), the control service runs on both
//! hosts and the domain's control socket must follow it too; `machinectl pause`/`resume` on
//! the destination then act on the migrated domain.
//! The guest has no vsock device (this host has no /dev/vhost-vsock), so no CID is checked.

#[path = "lab/mod.rs"]
mod lab;

use lab::pair::Pair;
use lab::{ct_bin, Domain, Lab, Options};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

const NAME: &str = "vsd-mig";
const UUID: &str = "7b3e2a9c-51d4-4f0e-8a6b-1c2d3e4f5a60";
const SERIAL: &str = "/var/log/vsd-mig-serial.log";
/// Where the logging hook writes, one line per call: `OP SUBOP EXTRA`.
const HOOK_LOG: &str = "/var/log/vsd-hook-calls.log";
/// While this file exists, the logging hook refuses incoming migrations (`migrate` exits 1).
const REFUSE: &str = "/etc/vsd-refuse-migrate";
const LONG: Duration = Duration::from_secs(60);

/// Runs before ours (`10-` < `50-`); `migrate` is a filter: the XML goes back out unchanged.
const LOG_HOOK: &str = r#"#!/bin/sh
echo "$2 $3 $4" >> /var/log/vsd-hook-calls.log
if [ "$2" = migrate ]; then
  cat
  [ -e /etc/vsd-refuse-migrate ] && { echo "incoming migration refused by the test" >&2; exit 1; }
fi
exit 0
"#;

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The hook calls recorded since the last call of this function (the log is emptied).
fn calls(lab: &Lab) -> Vec<String> {
    lab.sh(&format!("cat {HOOK_LOG} 2>/dev/null; : > {HOOK_LOG}"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// QEMU's pid as libvirt recorded it, if the domain runs here.
fn qemu_pid(lab: &Lab) -> Option<u32> {
    let o = lab.exec(&["cat", &format!("/run/libvirt/qemu/{NAME}.pid")]);
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// libvirt's state of the domain here, "absent" when it knows none.
fn domstate(lab: &Lab) -> String {
    let o = lab.exec(&["virsh", "domstate", NAME]);
    if o.status.success() {
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    } else {
        "absent".to_string()
    }
}

/// The machine named NAME as machined shows it: (Leader, Id, Service, Class), via busctl.
fn machine(lab: &Lab) -> Option<(u32, String, String, String)> {
    let o = lab.exec(&[
        "busctl",
        "call",
        "org.freedesktop.machine1",
        "/org/freedesktop/machine1",
        "org.freedesktop.machine1.Manager",
        "GetMachine",
        "s",
        NAME,
    ]);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("No machine"),
            "GetMachine {NAME}: {}",
            text(&o)
        );
        return None;
    }
    let path = String::from_utf8_lossy(&o.stdout);
    let path = path.trim().trim_start_matches("o ").trim_matches('"');
    // busctl prints the signature, then the value: `u 245`, `s "vm"`, `ay 16 123 62 …`
    let prop = |p: &str| {
        let v = lab.run(&[
            "busctl",
            "get-property",
            "org.freedesktop.machine1",
            path,
            "org.freedesktop.machine1.Machine",
            p,
        ]);
        let v = v.trim();
        v.split_once(' ').map_or(v, |(_, v)| v).to_string()
    };
    let leader = prop("Leader");
    let leader = leader
        .parse()
        .unwrap_or_else(|_| panic!("Leader: {leader}"));
    let id: String = prop("Id")
        .split_whitespace()
        .skip(1)
        .map(|b| format!("{:02x}", b.parse::<u8>().expect("byte")))
        .collect();
    let unquote = |s: String| s.trim_matches('"').to_string();
    Some((leader, id, unquote(prop("Service")), unquote(prop("Class"))))
}

/// Every machine machined knows on that host (libvirt's own `qemu-N-NAME` included).
fn machines(lab: &Lab) -> Vec<String> {
    lab.run(&["machinectl", "list", "--no-legend", "--no-pager"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Files of this domain in the hook's state directory (state, readiness; the control
/// socket is checked on its own).
fn state_files(lab: &Lab) -> Vec<String> {
    lab.sh(&format!(
        "find /run/virt-systemd/domains -name '*{UUID}*' 2>/dev/null | sort"
    ))
    .lines()
    .map(str::to_string)
    .collect()
}

/// `virt-systemd status --json NAME` on that host: the domain's entry.
fn status(lab: &Lab) -> Value {
    let o = lab.exec(&[&ct_bin("virt-systemd"), "status", "--json", NAME]);
    assert_eq!(o.status.code(), Some(0), "status: {}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("status --json");
    v["domains"][0].clone()
}

/// The domain runs on `here`, registered by us with here's QEMU as leader; `there` has no
/// trace of it (no QEMU, no machine, no state). Returns here's QEMU pid.
fn runs_on(step: &str, here: &Lab, there: &Lab) -> u32 {
    assert_eq!(
        domstate(here),
        "running",
        "{step}: domain on {}",
        here_name(here)
    );
    let pid = qemu_pid(here).unwrap_or_else(|| panic!("{step}: no QEMU pid"));
    let m = machine(here).unwrap_or_else(|| panic!("{step}: no machine {NAME}"));
    assert_eq!(
        m,
        (
            pid,
            UUID.replace('-', ""),
            "virt-systemd".to_string(),
            "vm".to_string()
        ),
        "{step}: the machine on the host the domain runs on"
    );
    assert_eq!(machines(here), [NAME], "{step}: libvirt's machine replaced");
    // The hook's record of this host's registration.
    let st: Value =
        serde_json::from_slice(&here.read_file(&format!("/run/virt-systemd/domains/{UUID}.json")))
            .expect("state file is JSON");
    assert_eq!(
        (&st["machine"], &st["registered"], &st["leader"]),
        (&Value::from(NAME), &Value::from(true), &Value::from(pid)),
        "{step}: state {st:#}"
    );
    // The state, and the guest's readiness where it reported (or it moved along).
    let mut files = state_files(here);
    files.retain(|f| *f != format!("/run/virt-systemd/domains/{UUID}.notify.json"));
    assert_eq!(
        files,
        [format!("/run/virt-systemd/domains/{UUID}.json")],
        "{step}"
    );
    assert_eq!(qemu_pid(there), None, "{step}: QEMU on the other host");
    assert_eq!(machine(there), None, "{step}: machine on the other host");
    assert_eq!(machines(there), Vec::<String>::new(), "{step}: other host");
    assert_eq!(
        state_files(there),
        Vec::<String>::new(),
        "{step}: other host"
    );
    assert_ne!(domstate(there), "running", "{step}: other host");
    pid
}

const READY_STATUS: &str = "vsd-mig guest ready";

fn readiness_file() -> String {
    format!("/run/virt-systemd/domains/{UUID}.notify.json")
}

/// The readiness the running domain carries in its live metadata (empty: none).
fn carried(lab: &Lab) -> String {
    lab.sh(&format!(
        "virsh metadata {NAME} urn:virt-systemd:readiness:1 --live 2>/dev/null || true"
    ))
}

/// The guest's readiness came along: the record is on `here`, `wait-ready` returns at once
/// with its STATUS=, `status` shows it.
fn ready_on(step: &str, here: &Lab) {
    let w = here.exec(&[
        &ct_bin("virt-systemd"),
        "wait-ready",
        NAME,
        "--timeout",
        "5",
    ]);
    assert!(w.status.success(), "{step}: wait-ready: {}", text(&w));
    assert_eq!(
        String::from_utf8_lossy(&w.stdout).trim(),
        READY_STATUS,
        "{step}"
    );
    let d = status(here);
    assert_eq!(d["readiness"]["ready"], true, "{step}: {d:#}");
    assert_eq!(d["readiness"]["ssh"], true, "{step}: {d:#}");
}

/// This domain's control socket, served by virt-systemd-control.service (systemd ≥ 261).
const CONTROL: &str = "/run/virt-systemd/control/7b3e2a9c-51d4-4f0e-8a6b-1c2d3e4f5a60";

/// systemd's major version on that host.
fn systemd_version(lab: &Lab) -> u32 {
    let v = lab.run(&["systemctl", "--version"]);
    v.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("systemctl --version: {v}"))
}

fn socket_exists(lab: &Lab) -> bool {
    lab.exec(&["test", "-S", CONTROL]).status.success()
}

/// Where control sockets are served: the domain's socket is on `here` only, and answers.
fn control_follows(step: &str, here: &Lab, there: &Lab) {
    here.wait_for(&format!("{step}: the control socket here"), LONG, || {
        socket_exists(here).then_some(())
    });
    there.wait_for(&format!("{step}: no control socket there"), LONG, || {
        (!socket_exists(there)).then_some(())
    });
    let idl = here.run(&["varlinkctl", "introspect", CONTROL]);
    assert!(
        idl.contains("interface io.systemd.MachineInstance"),
        "{step}: {idl}"
    );
}

fn here_name(lab: &Lab) -> String {
    lab.run(&["hostname"]).trim().to_string()
}

fn migrate(from: &Lab, to: &str, extra: &[&str]) -> Output {
    let uri = Pair::uri(to);
    let mig = Pair::migrate_uri(NAME);
    let mut argv = vec![
        "virsh",
        "migrate",
        "--live",
        NAME,
        &uri,
        "--migrateuri",
        &mig,
    ];
    argv.extend_from_slice(extra);
    from.exec(&argv)
}

const DEST_OK: [&str; 4] = [
    "migrate begin -",
    "prepare begin -",
    "start begin -",
    "started begin -",
];

/// `release end REASON`: libvirt passes the reason since 10.5, `-` before (DESIGN §4).
fn release(lab: &Lab, reason: &str) -> String {
    let v = lab.run(&["libvirtd", "--version"]);
    let v: Vec<u32> = v
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    let reason = if v.as_slice() >= [10, 5].as_slice() {
        reason
    } else {
        "-"
    };
    format!("release end {reason}")
}

/// What the source's hook gets for a successful migration.
fn source_ok(lab: &Lab) -> Vec<String> {
    vec!["stopped end -".to_string(), release(lab, "migrated")]
}

/// A slow migration a → b, failed by `break_it` once it is under way; the source keeps the
/// VM (same QEMU, same registration), the destination has nothing. Returns b's hook calls.
fn failed_midway(a: &Lab, b: &Lab, ctl: bool, what: &str, break_it: impl FnOnce()) -> Vec<String> {
    let pid = qemu_pid(a).expect("running on a");
    let uri = Pair::uri("b");
    let mig = Pair::migrate_uri(NAME);
    // 1 MiB/s: the guest's memory takes far longer than the steps below.
    let child = a.spawn(&[
        "virsh",
        "migrate",
        "--live",
        "--bandwidth",
        "1",
        NAME,
        &uri,
        "--migrateuri",
        &mig,
    ]);
    // Under way: b's QEMU started, and a's QEMU is sending.
    a.wait_for("the migration to send memory", LONG, || {
        let info = a.exec(&["virsh", "domjobinfo", NAME]);
        let info = String::from_utf8_lossy(&info.stdout).into_owned();
        (info.contains("Outgoing migration") && info.contains("Memory processed")).then_some(())
    });
    b.wait_for("b's QEMU", LONG, || qemu_pid(b));
    break_it();
    let out = child.wait_with_output().expect("virsh migrate");
    assert!(
        !out.status.success(),
        "{what}: migration succeeded: {}",
        text(&out)
    );
    b.wait_for("b to forget the domain", LONG, || {
        (domstate(b) == "absent").then_some(())
    });
    assert_eq!(runs_on(what, a, b), pid, "{what}: a's QEMU was replaced");
    if ctl {
        control_follows(what, a, b);
    }
    assert_eq!(calls(a), Vec::<String>::new(), "{what}: hook calls on a");
    calls(b)
}

fn session(suite: &str, libvirt_cgroups: bool) {
    let Some(pair) = Pair::up_with(Options::new(suite).libvirt_cgroups(libvirt_cgroups)) else {
        return;
    };
    let t0 = std::time::Instant::now();
    let (a, b) = (&pair.a, &pair.b);
    let since = [a.now(), b.now()];
    // systemd ≥ 261 (sid): the hook registers a control address, served by the control
    // service on each host; it must follow the domain too.
    let ctl = systemd_version(a) >= 261;
    for lab in [a, b] {
        lab.write_file(
            "/etc/libvirt/hooks/qemu.d/10-vsd-log",
            LOG_HOOK.as_bytes(),
            "755",
        );
        lab.install_virt_systemd_hook(); // restarts libvirtd: both hooks read
                                         // Everywhere: it also carries readiness in the live metadata.
        lab.start_control_service();
    }
    let follows = |step: &str, here: &Lab, there: &Lab| {
        if ctl {
            control_follows(step, here, there);
        }
    };

    // A persistent domain on a, enabled (virt-systemd's record in its metadata), started.
    let xml = Domain::tiny(NAME, UUID, SERIAL).xml();
    a.write_file("/root/vsd-mig.xml", xml.as_bytes(), "644");
    a.virsh(&["define", "/root/vsd-mig.xml"]);
    let o = a.exec(&[&ct_bin("virt-systemd"), "enable", NAME, "--hostname", NAME]);
    assert_eq!(o.status.code(), Some(0), "enable: {}", text(&o));
    a.virsh(&["start", NAME]);
    runs_on("started on a", a, b);
    follows("started on a", a, b);
    assert_eq!(
        calls(a),
        ["prepare begin -", "start begin -", "started begin -"],
        "start on a"
    );
    assert_eq!(calls(b), Vec::<String>::new());

    // The guest reported readiness on a. It has no vsock device (a vhost-user vsock cannot
    // migrate: QEMU refuses, "vhost-user backend lacks VHOST_USER_PROTOCOL_F_LOG_SHMFD"), so
    // the record is written as the listener writes it; the control service copies it into
    // the live metadata, which travels with the domain.
    a.write_file(
        &readiness_file(),
        serde_json::json!({"ready": true, "status": READY_STATUS, "messages": 1,
                           "units_active": ["ssh-access.target"], "updated": 1})
        .to_string()
        .as_bytes(),
        "644",
    );
    a.wait_for("readiness in a's live metadata", LONG, || {
        carried(a).contains(READY_STATUS).then_some(())
    });

    // a → b, virsh driving both daemons (the default, non-p2p protocol).
    let o = migrate(a, "b", &[]);
    assert!(o.status.success(), "a → b: {}", text(&o));
    runs_on("after a → b", b, a);
    follows("after a → b", b, a);
    ready_on("after a → b", b);
    assert_eq!(domstate(a), "shut off", "a keeps the persistent definition");
    assert_eq!(calls(a), source_ok(a), "a → b: hook calls on the source");
    assert_eq!(calls(b), DEST_OK, "a → b: hook calls on the destination");

    // b → a, peer to peer (b's libvirtd connects to a's).
    let o = migrate(b, "a", &["--p2p"]);
    assert!(o.status.success(), "b → a: {}", text(&o));
    runs_on("after b → a", a, b);
    follows("after b → a", a, b);
    ready_on("after b → a", a);
    assert_eq!(domstate(b), "absent", "b had only the transient domain");
    assert_eq!(calls(b), source_ok(b), "b → a: hook calls on the source");
    assert_eq!(calls(a), DEST_OK, "b → a: hook calls on the destination");

    // Refused by the destination: its `migrate` hook exits 1.
    let pid = qemu_pid(a).expect("running on a");
    b.run(&["touch", REFUSE]);
    let o = migrate(a, "b", &[]);
    assert!(!o.status.success(), "refused: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused by the test"),
        "refused: {}",
        text(&o)
    );
    b.run(&["rm", REFUSE]);
    assert_eq!(runs_on("refused by b", a, b), pid);
    follows("refused by b", a, b);
    assert_eq!(calls(a), Vec::<String>::new(), "refused: hook calls on a");
    assert_eq!(calls(b), ["migrate begin -"], "refused: hook calls on b");

    // Cancelled on the source while memory is being sent.
    let on_b = failed_midway(a, b, ctl, "domjobabort", || {
        a.virsh(&["domjobabort", NAME]);
    });
    let mut want: Vec<String> = DEST_OK.map(String::from).to_vec();
    want.extend(["stopped end -".to_string(), release(b, "failed")]);
    assert_eq!(on_b, want, "domjobabort: hook calls on b");

    // The destination's QEMU killed while memory is being sent.
    let on_b = failed_midway(a, b, ctl, "destination QEMU killed", || {
        let pid = qemu_pid(b).expect("b's QEMU").to_string();
        b.run(&["kill", "-KILL", &pid]);
    });
    let mut want: Vec<String> = DEST_OK.map(String::from).to_vec();
    want.extend(["stopped end -".to_string(), release(b, "crashed")]);
    assert_eq!(on_b, want, "destination QEMU killed: hook calls on b");

    // a → b for good: the definition moves with virt-systemd's record.
    let o = migrate(a, "b", &["--persistent", "--undefinesource"]);
    assert!(o.status.success(), "a → b --persistent: {}", text(&o));
    let pid = runs_on("after a → b --persistent --undefinesource", b, a);
    follows("after a → b --persistent --undefinesource", b, a);
    ready_on("after a → b --persistent", b);
    assert_eq!(domstate(a), "absent", "--undefinesource");
    assert_eq!(
        calls(a),
        source_ok(a),
        "a → b --persistent: hook calls on a"
    );
    assert_eq!(calls(b), DEST_OK, "a → b --persistent: hook calls on b");
    let inactive = b.virsh(&["dumpxml", "--inactive", NAME]);
    assert!(
        inactive.contains("urn:virt-systemd:domain:1"),
        "b's definition lacks the record:\n{inactive}"
    );
    let d = status(b);
    assert_eq!(d["enabled"], true, "{d:#}");
    assert_eq!(d["registered"], true, "{d:#}");
    assert_eq!(d["running"], true, "{d:#}");
    assert_eq!(d["drift"], serde_json::json!([]), "{d:#}");
    assert_eq!(d["machine"]["leader"].to_string(), pid.to_string(), "{d:#}");

    if ctl {
        // machinectl on the destination acts on the migrated domain through its socket.
        for (verb, want) in [("pause", "paused"), ("resume", "running")] {
            let o = b.exec(&["machinectl", verb, NAME]);
            assert!(o.status.success(), "machinectl {verb}: {}", text(&o));
            b.wait_for(&format!("{want} after machinectl {verb}"), LONG, || {
                (domstate(b) == want).then_some(())
            });
        }
        assert_eq!(qemu_pid(b), Some(pid), "machinectl pause/resume kept QEMU");
    }

    // A new boot on the destination: not ready until the guest says so again (the live
    // metadata of a fresh start carries nothing).
    b.virsh(&["destroy", NAME]);
    b.virsh(&["start", NAME]);
    runs_on("started again on b", b, a);
    let w = b.exec(&[
        &ct_bin("virt-systemd"),
        "wait-ready",
        NAME,
        "--timeout",
        "2",
    ]);
    assert_eq!(
        w.status.code(),
        Some(15),
        "wait-ready after a new boot: {}",
        text(&w)
    );
    assert!(
        !carried(b).contains(READY_STATUS),
        "a fresh start carries readiness"
    );
    calls(b);

    // Stopped on b: nothing left anywhere.
    b.virsh(&["destroy", NAME]);
    assert_eq!(
        calls(b),
        ["stopped end -".to_string(), release(b, "destroyed")],
        "destroy on b"
    );
    for lab in [a, b] {
        if ctl {
            lab.wait_for("no control socket", LONG, || {
                (!socket_exists(lab)).then_some(())
            });
        }
        assert_eq!(machines(lab), Vec::<String>::new());
        assert_eq!(state_files(lab), Vec::<String>::new());
        assert_eq!(qemu_pid(lab), None);
    }
    for (lab, since) in [(a, &since[0]), (b, &since[1])] {
        assert_eq!(
            lab.hook_warnings(since),
            "",
            "hook warnings on {}",
            here_name(lab)
        );
    }
    lab::announce(&format!(
        "lab pair {suite} (libvirt cgroups: {libvirt_cgroups}): migration test body {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    pair.down()
        .expect("both hosts torn down, nothing left behind");
}

/// libvirt without usable cgroups: QEMU in libvirtd.service, the hook creates its scope.
#[test]
fn migrate_trixie() {
    session("trixie", false);
}

/// libvirt with cgroups, as on most hosts: libvirt registers `qemu-N-NAME` on the
/// destination too, and the hook takes its place there.
#[test]
fn migrate_trixie_libvirt_cgroups() {
    session("trixie", true);
}

#[test]
fn migrate_bookworm() {
    session("bookworm", false);
}

#[test]
fn migrate_sid() {
    session("sid", false);
}
