//! Opt-in (`LAB_FULL=1`; on by default in CI unless `LAB_FULL=0`): a real Debian guest with
//! systemd as its PID 1, booted under TCG with direct kernel boot from a root filesystem built
//! by the lab (tests/lab/guest/full-image.sh).
//!
//! `full_guest_*`: the domain rewritten by `virt-systemd rewrite` with `--hostname`,
//! `--machine-id` and a custom credential. A unit in the guest (guest/full-report.sh) prints
//! on the serial console what systemd made of them; the test checks systemd applied all three.

#[path = "lab/mod.rs"]
mod lab;

use lab::{announce, ct_bin, Lab, CT_BOOT, CT_IMAGES};
use std::path::Path;
use std::time::{Duration, Instant};

const NAME: &str = "vsd-full";
const UUID: &str = "0b7d5c3e-2f41-4a6b-9c8d-7e6f5a4b3c2d";
const SERIAL: &str = "/var/log/libvirt/qemu/vsd-full-serial.log";
const HOSTNAME: &str = "full-guest";
const CRED: &str = "hello, full guest = ok \"é\" <&>";

fn domain_xml(suite: &str) -> String {
    format!(
        r#"<domain type='qemu'>
  <name>{NAME}</name>
  <uuid>{UUID}</uuid>
  <memory unit='MiB'>1536</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{CT_BOOT}/vmlinuz</kernel>
    <initrd>{CT_BOOT}/full-{suite}.cpio.zst</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet loglevel=1 systemd.show_status=0</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='{SERIAL}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"#
    )
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
