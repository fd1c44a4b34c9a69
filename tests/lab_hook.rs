//! `virt-systemd-hook` against real libvirtd, QEMU (TCG) and systemd-machined in the lab,
//! in both libvirt cgroup modes: every start registers, every kind of stop unregisters,
//! and the VM never suffers for it.

#[path = "lab/mod.rs"]
mod lab;

use lab::{ct_bin, Lab, Options, CT_BOOT, HOOK_LINK};
use std::collections::HashMap;
use std::time::Duration;

/// Waits for what must happen (a registration, a clean-up): only bounds a hang. The hooks
/// get a 20 s D-Bus deadline here (`install`), and TCG guests on a loaded machine are slow.
const LONG: Duration = Duration::from_secs(180);

fn uuid_of(i: u32) -> String {
    format!("6c1e1a2b-7d1f-4c57-9c4e-{i:012x}")
}

fn hex(u: &str) -> String {
    u.replace('-', "")
}

struct Dom<'a> {
    name: &'a str,
    uuid: String,
    initrd: &'a str,
    kernel: &'a str,
    nic: Option<&'a str>,
}

impl Dom<'_> {
    fn xml(&self) -> String {
        let nic = self.nic.map_or(String::new(), |t| {
            format!("<interface type='ethernet'><target dev='{t}' managed='yes'/><model type='virtio'/></interface>")
        });
        format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='/var/log/libvirt/qemu/{name}-serial.log'/><target port='0'/></serial>
    {nic}
    <memballoon model='none'/>
  </devices>
</domain>
",
            name = self.name,
            uuid = self.uuid,
            kernel = self.kernel,
            initrd = self.initrd,
        )
    }
}

fn tiny(name: &str, i: u32) -> Dom<'_> {
    Dom {
        name,
        uuid: uuid_of(i),
        initrd: "/var/lib/libvirt/boot/tiny-initrd.img",
        kernel: "/var/lib/libvirt/boot/vmlinuz",
        nic: None,
    }
}

/// `machinectl show NAME` as a map; None when there is no such machine.
fn machine(lab: &Lab, name: &str) -> Option<HashMap<String, String>> {
    let out = lab.exec(&["machinectl", "show", name]);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// All machines (name, service, id).
fn machines(lab: &Lab) -> Vec<(String, String, String)> {
    let names = lab.run(&["machinectl", "list", "--no-legend", "--no-pager"]);
    names
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|n| {
            machine(lab, n).map(|m| {
                (
                    n.to_string(),
                    m.get("Service").cloned().unwrap_or_default(),
                    m.get("Id").cloned().unwrap_or_default(),
                )
            })
        })
        .collect()
}

fn qemu_pid(lab: &Lab, name: &str) -> String {
    lab.run(&["cat", &format!("/run/libvirt/qemu/{name}.pid")])
        .trim()
        .to_string()
}

fn define_start(lab: &Lab, d: &Dom) {
    lab.write_file(&format!("/root/{}.xml", d.name), d.xml().as_bytes(), "644");
    lab.virsh(&["define", &format!("/root/{}.xml", d.name)]);
    lab.virsh(&["start", d.name]);
}

/// Wait for our registration of `d` and check it against libvirt's view.
fn assert_registered(lab: &Lab, d: &Dom, machine_name: &str) -> HashMap<String, String> {
    let m = lab.wait_for(&format!("machine {machine_name}"), LONG, || {
        machine(lab, machine_name)
    });
    assert_eq!(
        m["Id"],
        hex(&d.uuid),
        "{machine_name}: Id is the domain UUID"
    );
    assert_eq!(m["Class"], "vm");
    assert_eq!(m["Service"], "virt-systemd");
    assert_eq!(m["Leader"], qemu_pid(lab, d.name), "leader is QEMU");
    // libvirt's own registration (cgroups mode) was replaced, not left beside ours.
    let libvirts: Vec<_> = machines(lab)
        .into_iter()
        .filter(|(_, svc, id)| svc == "libvirt-qemu" && id == &hex(&d.uuid))
        .collect();
    assert!(libvirts.is_empty(), "libvirt's machine left: {libvirts:?}");
    let st = lab.run(&["cat", &format!("/run/virt-systemd/domains/{}.json", d.uuid)]);
    assert!(st.contains("\"registered\": true"), "{st}");
    m
}

/// After a stop: no machine with our ID, no state, domain not running.
fn assert_clean(lab: &Lab, d: &Dom) {
    let state = format!("/run/virt-systemd/domains/{}.json", d.uuid);
    lab.wait_for(&format!("{} cleaned up", d.name), LONG, || {
        let gone = !machines(lab).iter().any(|(_, _, id)| id == &hex(&d.uuid));
        let no_state = !lab.exec(&["test", "-e", &state]).status.success();
        (gone && no_state).then_some(())
    });
    let st = lab.virsh(&["domstate", d.name]);
    assert!(!st.contains("running"), "{}: {st}", d.name);
}

/// The VM is still running a while after its registration. A window, not a race: machined
/// stopping the VM's unit after a refused registration would come within it; a VM that
/// survives passes however slow the machine is.
fn assert_still_running(lab: &Lab, d: &Dom) {
    std::thread::sleep(Duration::from_secs(3));
    let st = lab.virsh(&["domstate", d.name]);
    assert_eq!(st.trim(), "running", "{} must survive registration", d.name);
}

/// libvirtd logged no error about hooks, and our hook logged no failure.
fn assert_quiet_logs(lab: &Lab, since: &str) {
    let libvirt = lab.sh(&format!(
        "journalctl --no-pager -q -u libvirtd -p err --since '{since}' | grep -i hook || true"
    ));
    assert!(
        libvirt.trim().is_empty(),
        "libvirtd errors about hooks:\n{libvirt}"
    );
    let ours = lab.hook_warnings(since);
    assert!(ours.trim().is_empty(), "hook warnings:\n{ours}");
    // Only our own messages: no library debug output (zbus logs every D-Bus message).
    let chatter = lab.sh(&format!(
        "journalctl --no-pager -q -o cat SYSLOG_IDENTIFIER=virt-systemd-hook --since '{since}' \
         | grep -c -e 'Msg {{' -e 'Handshake' -e 'Waiting for message' || true"
    ));
    assert_eq!(chatter.trim(), "0", "library debug lines in the journal");
    let ours = lab.sh(&format!(
        "journalctl --no-pager -q -o cat SYSLOG_IDENTIFIER=virt-systemd-hook --since '{since}' | grep -c 'registered machine' || true"
    ));
    assert_ne!(
        ours.trim(),
        "0",
        "the hook's own INFO lines reach the journal"
    );
}

fn install(lab: &Lab) {
    // Five TCG guests booting at once on two cores can starve the hooks (debug builds here)
    // and machined for longer than the default 2 s deadline, after which a hook leaves the
    // VM unregistered by design (fail-open, tests/hook_faults.rs). These tests are about
    // what gets registered, so give the deadline room.
    lab.write_file(
        "/etc/virt-systemd/config.toml",
        b"[machined]\ntimeout_ms = 20000\n",
        "644",
    );
    lab.install_virt_systemd_hook();
}

/// The hook logged `message_id` for domain `name` since `since`.
fn assert_logged(lab: &Lab, since: &str, name: &str, message_id: &str, what: &str) {
    let n = lab.sh(&format!(
        "journalctl --no-pager -q -o cat SYSLOG_IDENTIFIER=virt-systemd-hook DOMAIN={name} \
         MESSAGE_ID={message_id} --since '{since}' | grep -c . || true"
    ));
    assert_ne!(n.trim(), "0", "{name}: the hook logged no {what}");
}

fn session(suite: &str, cgroups: bool) {
    let Some(lab) = Lab::up_with(Options::new(suite).libvirt_cgroups(cgroups)) else {
        return;
    };
    install(&lab);
    let since = lab.now();
    let tun = lab.exec(&["test", "-c", "/dev/net/tun"]).status.success();

    // A: start registers (with the NIC where the lab has /dev/net/tun); destroy cleans up.
    let mut a = tiny("vsd-a", 1);
    a.nic = tun.then_some("vsdtap0");
    define_start(&lab, &a);
    let m = assert_registered(&lab, &a, "vsd-a");
    let unit = &m["Unit"];
    if cgroups {
        assert!(
            unit.starts_with("machine-qemu"),
            "libvirt's scope kept: {unit}"
        );
    } else {
        assert_eq!(unit, "machine-vsd\\x2da.scope", "own scope created");
    }
    if tun {
        // machinectl show does not print NetworkInterfaces; ask machined directly.
        let ifindex = lab.run(&["cat", "/sys/class/net/vsdtap0/ifindex"]);
        let nics = lab.sh(
            "busctl get-property org.freedesktop.machine1 \"$(busctl call org.freedesktop.machine1 \
             /org/freedesktop/machine1 org.freedesktop.machine1.Manager GetMachine s vsd-a | cut -d'\"' -f2)\" \
             org.freedesktop.machine1.Machine NetworkInterfaces",
        );
        assert_eq!(
            nics.trim(),
            format!("ai 1 {}", ifindex.trim()),
            "NIC registered"
        );
    }
    assert_still_running(&lab, &a);
    lab.virsh(&["destroy", "vsd-a"]);
    assert_clean(&lab, &a);

    // B: QEMU killed hard.
    lab.virsh(&["start", "vsd-a"]);
    assert_registered(&lab, &a, "vsd-a");
    lab.run(&["kill", "-9", &qemu_pid(&lab, "vsd-a")]);
    assert_clean(&lab, &a);

    // C: the guest powers itself off. libvirt runs the started hook once the vCPUs run, so
    // the guest stays up a while (10 s after booting) for the hook to register it first.
    // Whether a poll sees the machine in that window depends on the machine's load: the
    // journal shows what the hook did whenever the test looks.
    lab.sh(&format!(
        "printf '#!/bin/busybox sh\\n/bin/busybox mount -t proc p /proc\\necho OFFGUEST up\\n/bin/busybox sleep 10\\n/bin/busybox poweroff -f\\n' > /root/off-init.sh && \
         /opt/virt-systemd/lab/guest/mkinitrd.sh {CT_BOOT}/off-initrd.img /root/off-init.sh"
    ));
    let mut c = tiny("vsd-off", 3);
    c.initrd = "/var/lib/libvirt/boot/off-initrd.img";
    let since_c = lab.now();
    define_start(&lab, &c);
    lab.wait_for_text(
        "/var/log/libvirt/qemu/vsd-off-serial.log",
        "OFFGUEST",
        Duration::from_secs(300),
    );
    assert_clean(&lab, &c);
    // No unregistration to log: QEMU's exit emptied the machine's scope, and machined
    // dropped the machine before the stopped hook ran (assert_clean: it is gone).
    assert_logged(
        &lab,
        &since_c,
        "vsd-off",
        virt_systemd::logging::MSG_REGISTERED,
        "registration",
    );

    // D: a start that fails (missing kernel) leaves nothing behind.
    let mut dd = tiny("vsd-fail", 4);
    dd.kernel = "/var/lib/libvirt/boot/no-such-kernel";
    lab.write_file("/root/vsd-fail.xml", dd.xml().as_bytes(), "644");
    lab.virsh(&["define", "/root/vsd-fail.xml"]);
    let out = lab.exec(&["virsh", "start", "vsd-fail"]);
    assert!(
        !out.status.success(),
        "start with a missing kernel must fail"
    );
    assert_clean(&lab, &dd);

    // E: libvirtd restarts while the VM runs (reconnect), then destroy.
    lab.virsh(&["start", "vsd-a"]);
    assert_registered(&lab, &a, "vsd-a");
    lab.run(&["systemctl", "restart", "libvirtd"]);
    assert_still_running(&lab, &a);
    assert_registered(&lab, &a, "vsd-a");
    lab.virsh(&["destroy", "vsd-a"]);
    assert_clean(&lab, &a);

    // F: managedsave, then start again (restore passes the XML through).
    lab.virsh(&["start", "vsd-a"]);
    assert_registered(&lab, &a, "vsd-a");
    lab.virsh(&["managedsave", "vsd-a"]);
    assert_clean(&lab, &a);
    lab.virsh(&["start", "vsd-a"]);
    assert_registered(&lab, &a, "vsd-a");
    lab.virsh(&["destroy", "vsd-a"]);
    assert_clean(&lab, &a);

    // G: five domains started at once.
    let names: Vec<String> = (0..5).map(|i| format!("vsd-many-{i}")).collect();
    let many: Vec<Dom> = names
        .iter()
        .enumerate()
        .map(|(i, n)| tiny(n, 10 + i as u32))
        .collect();
    for d in &many {
        lab.write_file(&format!("/root/{}.xml", d.name), d.xml().as_bytes(), "644");
        lab.virsh(&["define", &format!("/root/{}.xml", d.name)]);
    }
    lab.sh("for i in 0 1 2 3 4; do virsh start vsd-many-$i & done; wait");
    for d in &many {
        assert_registered(&lab, d, d.name);
    }
    lab.sh("for i in 0 1 2 3 4; do virsh destroy vsd-many-$i & done; wait");
    for d in &many {
        assert_clean(&lab, d);
    }

    // H: names machined does not accept as they are.
    let long = format!("vsd_{}", "x".repeat(76));
    for (i, (name, want)) in [
        ("vsd_under_score".to_string(), "vsd-under-score".to_string()),
        (
            long.clone(),
            format!("vsd-{}-{}", "x".repeat(51), &hex(&uuid_of(21))[..8]),
        ),
    ]
    .iter()
    .enumerate()
    {
        let d = tiny(name, 20 + i as u32);
        define_start(&lab, &d);
        assert_registered(&lab, &d, want);
        lab.virsh(&["destroy", name]);
        assert_clean(&lab, &d);
    }

    // I: the name is taken by another machine: fall back, leave the other alone.
    lab.sh("systemctl stop vsd-squatter 2>/dev/null; systemd-run -q --unit=vsd-squatter sleep 600");
    let sp = lab.run(&["systemctl", "show", "-P", "MainPID", "vsd-squatter"]);
    lab.run(&[
        "busctl",
        "call",
        "org.freedesktop.machine1",
        "/org/freedesktop/machine1",
        "org.freedesktop.machine1.Manager",
        "RegisterMachine",
        "sayssus",
        "vsd-taken",
        "16",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "10",
        "11",
        "12",
        "13",
        "14",
        "15",
        "16",
        "squatter",
        "container",
        sp.trim(),
        "",
    ]);
    let t = tiny("vsd-taken", 30);
    define_start(&lab, &t);
    assert_registered(&lab, &t, &format!("vsd-taken-{}", &hex(&t.uuid)[..8]));
    lab.virsh(&["destroy", "vsd-taken"]);
    assert_clean(&lab, &t);
    let sq = machine(&lab, "vsd-taken").expect("the other machine is untouched");
    assert_eq!(sq["Service"], "squatter");
    lab.run(&["systemctl", "stop", "vsd-squatter"]);

    assert_quiet_logs(&lab, &since);

    // J: the same hook installed as the single-file hook /etc/libvirt/hooks/qemu.
    lab.sh(&format!(
        "rm -f {HOOK_LINK} && ln -sfn {} /etc/libvirt/hooks/qemu && systemctl restart libvirtd",
        ct_bin("virt-systemd-hook")
    ));
    lab.virsh(&["start", "vsd-a"]);
    assert_registered(&lab, &a, "vsd-a");
    lab.virsh(&["destroy", "vsd-a"]);
    assert_clean(&lab, &a);
    assert_quiet_logs(&lab, &since);

    lab.down().expect("lab torn down cleanly");
}

#[test]
fn hook_trixie() {
    session("trixie", false);
}

#[test]
fn hook_trixie_libvirt_cgroups() {
    session("trixie", true);
}

#[test]
fn hook_bookworm() {
    session("bookworm", false);
}

#[test]
fn hook_bookworm_libvirt_cgroups() {
    session("bookworm", true);
}

/// VSockCID and SSHAddress need RegisterMachineEx (systemd ≥ 259, the sid lab). A domain
/// with a vsock device cannot start here, so run the hook directly, as libvirt would, with
/// a live XML carrying a CID and a pid file naming a real process.
fn vsock_direct(suite: &str) {
    let Some(lab) = Lab::up(suite) else { return };
    let ex = lab
        .sh("busctl introspect org.freedesktop.machine1 /org/freedesktop/machine1 org.freedesktop.machine1.Manager | grep -c RegisterMachineEx || true")
        .trim()
        .to_string();
    lab.sh("systemctl stop vsd-fakeqemu 2>/dev/null; systemd-run -q --unit=vsd-fakeqemu sleep 600");
    let pid = lab.run(&["systemctl", "show", "-P", "MainPID", "vsd-fakeqemu"]);
    lab.sh(&format!("mkdir -p /run/vsd-pids && echo {} > /run/vsd-pids/vsd-cid.pid && printf '[machined]\\ntimeout_ms = 20000\\n[hook]\\npid_dir = \"/run/vsd-pids\"\\n' > /root/hook.toml", pid.trim()));
    let uuid = uuid_of(40);
    let live = format!(
        "<domain type='qemu' id='9'><name>vsd-cid</name><uuid>{uuid}</uuid><os><type>hvm</type></os>\
         <devices><vsock model='virtio'><cid auto='yes' address='42'/></vsock></devices></domain>"
    );
    let hook = ct_bin("virt-systemd-hook");
    let out = lab.exec_stdin(
        &[
            "env",
            "VIRT_SYSTEMD_CONFIG=/root/hook.toml",
            &hook,
            "vsd-cid",
            "started",
            "begin",
            "-",
        ],
        live.as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    let m = machine(&lab, "vsd-cid").expect("registered");
    assert_eq!(m["Leader"], pid.trim());
    assert_eq!(m["Id"], hex(&uuid));
    let st = lab.run(&["cat", &format!("/run/virt-systemd/domains/{uuid}.json")]);
    if ex != "0" && !ex.is_empty() {
        assert_eq!(m.get("VSockCID").map(String::as_str), Some("42"), "{m:?}");
        assert_eq!(
            m.get("SSHAddress").map(String::as_str),
            Some("vsock/42"),
            "{m:?}"
        );
        assert!(st.contains("\"api\": \"Ex\""), "{st}");
    } else {
        assert!(st.contains("\"api\": \"WithNetwork\""), "{st}");
    }
    let out = lab.exec_stdin(
        &[
            "env",
            "VIRT_SYSTEMD_CONFIG=/root/hook.toml",
            &hook,
            "vsd-cid",
            "release",
            "end",
            "destroyed",
        ],
        live.as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
    // machined forgets an unregistered machine at its next garbage collection, after its
    // reply: wait for that rather than expect it done when the hook returns.
    lab.wait_for("vsd-cid unregistered", LONG, || {
        machine(&lab, "vsd-cid").is_none().then_some(())
    });
    // CreateMachine moved it into its own scope, which unregistering leaves running.
    lab.run(&["kill", pid.trim()]);
    lab.down().expect("lab torn down cleanly");
}

#[test]
fn hook_vsock_cid_trixie() {
    vsock_direct("trixie");
}

#[test]
fn hook_vsock_cid_sid() {
    vsock_direct("sid");
}
