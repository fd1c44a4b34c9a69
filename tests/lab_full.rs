//! Opt-in (`LAB_FULL=1`; on by default in CI unless `LAB_FULL=0`): a real Debian guest with
//! systemd as its PID 1, booted under TCG with direct kernel boot from a root filesystem built
//! by the lab (tests/lab/guest/full-image.sh).
//!
//! `full_guest_*`: the domain rewritten by `virt-systemd rewrite` with `--hostname`,
//! `--machine-id` and a custom credential. A unit in the guest (guest/full-report.sh) prints
//! on the serial console what systemd made of them; the test checks systemd applied all three.
//!
//! `full_guest_vsock_*` (issue 6): the same guest on the user-space vsock backend
//! (`vhost-user-vsock-pci` + `vhost-device-vsock`, as in tests/lab_vsock.rs), rewritten with
//! `rewrite`'s defaults (`vmm.notify_socket=vsock-stream:2:8742`) and `--ssh-key`. The guest's
//! PID 1 itself reports to the host's `notify-listener` (started before the guest), so
//! `wait-ready` and `wait-ready --ssh` return; then `virt-systemd ssh DOMAIN -- …` runs
//! commands in the guest through the hybrid socket's `CONNECT 22` and the sshd that systemd's
//! ssh-generator bound to vsock port 22.

#[path = "lab/mod.rs"]
mod lab;

use lab::vsock::{self, exists, show, text, NOTIFY_PORT};
use lab::{announce, ct_bin, Lab, CT_BOOT, CT_IMAGES, CT_LAB};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NAME: &str = "vsd-full";
const UUID: &str = "0b7d5c3e-2f41-4a6b-9c8d-7e6f5a4b3c2d";
const SERIAL: &str = "/var/log/libvirt/qemu/vsd-full-serial.log";
const HOSTNAME: &str = "full-guest";
const CRED: &str = "hello, full guest = ok \"é\" <&>";

fn domain_xml(suite: &str) -> String {
    lab::Domain {
        name: NAME,
        uuid: UUID,
        memory_mib: 1536,
        vcpus: 2,
        initrd: &format!("full-{suite}.cpio.zst"),
        cmdline: "console=ttyS0 panic=-1 quiet loglevel=1 systemd.show_status=0",
        serial: SERIAL,
        vhost: None,
    }
    .xml()
}

/// The rest of the line after `KEY ` (systemd may put terminal escapes before it).
fn field<'a>(log: &'a str, key: &str) -> &'a str {
    let marker = format!("{key} ");
    log.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.find(marker.as_str()).map(|i| &l[i + marker.len()..]))
        .unwrap_or_else(|| panic!("guest printed no {key} line:\n{log}"))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// LAB_FULL=1 runs, LAB_FULL=0 does not; unset: only in CI.
fn wanted(what: &str, suite: &str) -> bool {
    let wanted = match std::env::var("LAB_FULL").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => std::env::var("CI").as_deref() == Ok("true"),
    };
    if !wanted {
        announce(&format!(
            "SKIPPED {what} on {suite}: opt-in outside CI, set LAB_FULL=1"
        ));
    }
    wanted
}

/// Build (or reuse) the full guest's image on the host; its path inside the container.
fn image(lab: &Lab) -> String {
    let out = lab.host_script("guest/full-image.sh", &[]);
    let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = Path::new(&host)
        .file_name()
        .unwrap_or_else(|| panic!("full-image.sh printed no image path: {host:?}"))
        .to_string_lossy()
        .into_owned();
    format!("{CT_IMAGES}/{name}")
}

fn full_guest(suite: &str) {
    if !wanted("full systemd guest", suite) {
        return;
    }
    let Some(lab) = Lab::up(suite) else { return };
    let t0 = Instant::now();
    let img = image(&lab);
    let t_image = t0.elapsed();
    // libvirt wants to own the files it boots: copy out of the read-only bind mount
    lab.run(&["cp", &img, &format!("{CT_BOOT}/full-{suite}.cpio.zst")]);
    lab.write_file("/root/full.xml", domain_xml(suite).as_bytes(), "644");
    let cred = format!("vsdtest={CRED}");
    lab.run(&[
        &ct_bin("virt-systemd"),
        "rewrite",
        "/root/full.xml",
        "-o",
        "/root/full-vsd.xml",
        "--hostname",
        HOSTNAME,
        "--machine-id",
        "--credential",
        &cred,
        "--no-vsock",
        "--no-notify",
    ]);
    lab.virsh(&["define", "/root/full-vsd.xml"]);
    let t_start = Instant::now();
    lab.virsh(&["start", NAME]);
    let log = lab.wait_for_text(SERIAL, "VSDFULL-END", Duration::from_secs(600));
    let boot = t_start.elapsed();
    let log = String::from_utf8_lossy(&log).into_owned();
    let _ = lab.exec(&["virsh", "destroy", NAME]);

    assert_eq!(
        field(&log, "VSDFULL-HOSTNAME"),
        HOSTNAME,
        "hostname not set from system.hostname"
    );
    assert_eq!(
        field(&log, "VSDFULL-MACHINEID"),
        UUID.replace('-', "").to_lowercase(),
        "/etc/machine-id is not the domain UUID"
    );
    let creds: Vec<&str> = field(&log, "VSDFULL-CREDS").split_whitespace().collect();
    assert!(
        creds.contains(&"vsdtest"),
        "custom credential not in /run/credentials/@system: {creds:?}"
    );
    assert_eq!(
        String::from_utf8(unhex(field(&log, "VSDFULL-CRED"))).expect("utf-8"),
        CRED,
        "custom credential's content"
    );
    lab.virsh(&["undefine", NAME]);
    announce(&format!(
        "lab {suite}: full systemd guest ok ({}): image {:.1} s, boot to report {:.1} s, test body {:.1} s",
        field(&log, "VSDFULL-BEGIN"),
        t_image.as_secs_f64(),
        boot.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));
}

#[test]
fn full_guest_trixie() {
    full_guest("trixie");
}

#[test]
fn full_guest_sid() {
    full_guest("sid");
}

// ---- the full guest on the user-space vsock backend: readiness from PID 1, ssh ----

const VS_NAME: &str = "vsd-fullvs";
const VS_UUID: &str = "6e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b";
const VS_SERIAL: &str = "/var/log/libvirt/qemu/vsd-fullvs-serial.log";
const VS_HOSTNAME: &str = "full-vsock-guest";
/// The backend's vhost-user socket and hybrid-vsock base path (see tests/lab_vsock.rs).
const VDIR: &str = "/run/vsd-fullvs";
const VHOST: &str = "/run/vsd-fullvs/vhost.sock";
const UDS: &str = "/run/vsd-fullvs/vm.vsock";

fn vsock_domain_xml() -> String {
    lab::Domain {
        name: VS_NAME,
        uuid: VS_UUID,
        memory_mib: 1536,
        vcpus: 2,
        initrd: "full-vsock.img",
        cmdline: "console=ttyS0 panic=-1 quiet loglevel=1 systemd.show_status=0 rdinit=/vsd/init \
                  systemd.mask=vsd-report.service systemd.journald.forward_to_console=1",
        serial: VS_SERIAL,
        vhost: Some(VHOST),
    }
    .xml()
}

/// The guest's console, the units' journals, the state: for failure messages.
fn vsock_diagnostics(lab: &Lab) -> String {
    vsock::diagnostics(lab, VS_SERIAL, "vsd-fullvs-backend", VDIR)
}

fn full_guest_vsock(suite: &str) {
    if !wanted("full systemd guest on the vsock backend", suite) {
        return;
    }
    let backend = lab::vhost_device_vsock();
    let Some(lab) = Lab::up(suite) else { return };
    let t0 = Instant::now();
    let img = image(&lab);
    let t_image = t0.elapsed();
    let bin = ct_bin("virt-systemd");
    let (_, readiness) = vsock::state_files(VS_UUID);

    // An ssh key pair on the host, where the ssh client runs (the lab has none).
    let keydir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-full-ssh-{suite}"));
    let _ = std::fs::remove_dir_all(&keydir);
    std::fs::create_dir_all(&keydir).expect("key dir");
    let key = keydir.join("id_ed25519");
    let kg = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vsd-lab-full", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) on the host");
    assert!(kg.status.success(), "ssh-keygen: {}", show(&kg));
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).expect("public key");

    // The real hook (state files), the boot files (image + vsock modules and /vsd/init).
    // The real hook, so starting a domain writes its state file (enabled, notify_port).
    lab.install_virt_systemd_hook();
    lab.run(&[
        &format!("{CT_LAB}/guest/full-vsock-overlay.sh"),
        "/root/vsock-overlay.cpio.gz",
    ]);
    lab.sh(&format!(
        "cat {img} /root/vsock-overlay.cpio.gz > {CT_BOOT}/full-vsock.img"
    ));

    // The backend, then the listener (from the config's [notify.hybrid]), before the guest:
    // PID 1 reports once, when it gets there.
    vsock::start_backend(&lab, &backend, "vsd-fullvs-backend", VDIR, VHOST, UDS);
    lab.write_file(
        "/etc/virt-systemd/config.toml",
        format!("[notify.hybrid]\n{VS_NAME} = \"{UDS}\"\n").as_bytes(),
        "644",
    );
    lab.sh(&format!(
        "systemd-run -q --unit=vsd-notify-listener {bin} notify-listener"
    ));
    let hybrid_sock = format!("{UDS}_{NOTIFY_PORT}");
    lab.wait_for(
        "the listener's hybrid socket",
        Duration::from_secs(60),
        || exists(&lab, &hybrid_sock).then_some(()),
    );

    // The domain, with rewrite's defaults for readiness; the vsock device is the
    // <qemu:commandline> one, so no <vsock>.
    lab.write_file("/root/fullvs.xml", vsock_domain_xml().as_bytes(), "644");
    lab.run(&[
        &bin,
        "rewrite",
        "/root/fullvs.xml",
        "-o",
        "/root/fullvs-vsd.xml",
        "--hostname",
        VS_HOSTNAME,
        "--machine-id",
        "--ssh-key",
        pubkey.trim(),
        "--no-vsock",
    ]);
    let xml = text(&lab.read_file("/root/fullvs-vsd.xml"));
    assert!(
        xml.contains(&format!(
            "io.systemd.credential:vmm.notify_socket=vsock-stream:2:{NOTIFY_PORT}"
        )) && xml.contains("io.systemd.credential:ssh.authorized_keys.root="),
        "rewrite did not set vmm.notify_socket and the ssh key:\n{xml}"
    );
    let t_start = vsock::define_and_start(&lab, "/root/fullvs-vsd.xml", VS_NAME, VS_SERIAL, || {
        vsock_diagnostics(&lab)
    });

    // PID 1's READY=1 (sent when the boot finished) through the listener.
    let wait = lab.exec(&[&bin, "wait-ready", VS_NAME, "--timeout", "600"]);
    let ready_secs = t_start.elapsed().as_secs_f64();
    assert!(
        wait.status.success(),
        "wait-ready {VS_NAME}: {}\n{}",
        show(&wait),
        vsock_diagnostics(&lab)
    );
    let status = text(&wait.stdout).trim().to_string();
    let r = vsock::json(&lab, &readiness);
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["hostname"], VS_HOSTNAME, "X_SYSTEMD_HOSTNAME: {r}");
    assert_eq!(
        r["machine_id"],
        VS_UUID.replace('-', ""),
        "X_SYSTEMD_MACHINE_ID: {r}"
    );
    let units = vsock::units_active(&r);
    assert!(
        units.contains(&"multi-user.target") || units.contains(&"basic.target"),
        "{r}"
    );

    // ssh-access.target: the sshd-vsock.socket that systemd's ssh-generator made pulls it in.
    let wait_ssh = lab.exec(&[&bin, "wait-ready", VS_NAME, "--ssh", "--timeout", "300"]);
    assert!(
        wait_ssh.status.success(),
        "wait-ready {VS_NAME} --ssh: {}\n{r}\n{}",
        show(&wait_ssh),
        vsock_diagnostics(&lab)
    );

    // `virt-systemd ssh` from the lab's host (the lab has no ssh client): state and the
    // backend's socket through the container's root, ProxyCommand `vsock-proxy --uds … 22`.
    let cfg = keydir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hook]\nstate_dir = \"{}\"\n[notify.hybrid]\n{VS_NAME} = \"{}\"\n",
            lab.host_path("/run/virt-systemd").display(),
            lab.host_path(UDS).display()
        ),
    )
    .expect("host config");
    let vssh = |cmd: &[&str]| -> (Output, f64) {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_virt-systemd"))
            .arg("--config")
            .arg(&cfg)
            .args(["ssh", VS_NAME, "--", "-i"])
            .arg(&key)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "ConnectTimeout=60"])
            .args(cmd)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("virt-systemd ssh");
        (out, t.elapsed().as_secs_f64())
    };
    let (t_true, ssh_secs) = vssh(&["true"]);
    assert!(
        t_true.status.success(),
        "virt-systemd ssh {VS_NAME} -- true: {}\n{}",
        show(&t_true),
        vsock_diagnostics(&lab)
    );
    let (host, _) = vssh(&["hostname"]);
    assert!(host.status.success(), "ssh hostname: {}", show(&host));
    assert_eq!(text(&host.stdout).trim(), VS_HOSTNAME);
    let (run, _) = vssh(&["systemctl", "is-system-running"]);
    let running = text(&run.stdout).trim().to_string();
    assert!(
        run.status.success() && running == "running",
        "ssh systemctl is-system-running: {}\nfailed units: {}",
        show(&run),
        text(
            &vssh(&["systemctl", "--failed", "--no-legend", "--plain"])
                .0
                .stdout
        )
    );
    // The remote command's exit status comes back.
    let (fail, _) = vssh(&["exit", "3"]);
    assert_eq!(fail.status.code(), Some(3), "{}", show(&fail));

    // Stop: the hook's release removes the state and the readiness with it.
    vsock::destroy(&lab, VS_NAME, VS_UUID);
    lab.virsh(&["undefine", VS_NAME]);
    let _ = lab.exec(&[
        "systemctl",
        "stop",
        "vsd-notify-listener",
        "vsd-fullvs-backend",
    ]);
    let _ = std::fs::remove_dir_all(&keydir);
    announce(&format!(
        "lab {suite}: full guest on vsock ok (STATUS={status:?}, guest {running}): image {:.1} s, \
         READY=1 from PID 1 {ready_secs:.1} s after start, `virt-systemd ssh -- true` \
         {ssh_secs:.1} s, test body {:.1} s",
        t_image.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));
}

#[test]
fn full_guest_vsock_trixie() {
    full_guest_vsock("trixie");
}

/// On demand (`LAB_SUITES=sid`).
#[test]
fn full_guest_vsock_sid() {
    full_guest_vsock("sid");
}
