//! Guest-side proof in the real lab (tests/lab/): what `virt-systemd rewrite` writes into a
//! domain arrives in a real guest byte for byte, through libvirt, QEMU's SMBIOS tables and the
//! kernel. A busybox initramfs (tests/lab/guest/proof-init.sh) prints the raw SMBIOS type 11
//! structures, /proc/cmdline and the product UUID to a serial log file; this test decodes them
//! and compares them with the rewritten XML and with what was asked for.
//!
//! One test per Debian suite; CI runs trixie and bookworm, `LAB_SUITES=sid` runs sid.

#[path = "lab/mod.rs"]
mod lab;

use base64::Engine as _;
use lab::{announce, ct_bin, Lab, CT_BOOT, CT_LAB};
use std::time::{Duration, Instant};

const NAME: &str = "vsd-proof";
const UUID: &str = "5f3e2c1a-9b8d-4e7f-a6b5-c4d3e2f1a0b9";
const SERIAL: &str = "/var/log/libvirt/qemu/vsd-proof-serial.log";
/// Commas (doubled by libvirt on QEMU's argv), '=', spaces, quotes, XML specials, non-ASCII.
const TRICKY: &str = "a,b=c \"d\" <&> é ü";
/// Leading/trailing blanks, a double comma, an apostrophe, a backslash, CJK characters.
const SPACED: &str = "  x,,y 'single' back\\slash 日本 ";
const CMDLINE_EXTRA: &str = "vsdtest=1 foo=bar";

fn domain_xml() -> String {
    lab::Domain {
        name: NAME,
        uuid: UUID,
        memory_mib: 128,
        vcpus: 1,
        initrd: "proof-initrd.img",
        cmdline: "console=ttyS0 panic=-1 quiet loglevel=1",
        serial: SERIAL,
        vhost: None,
    }
    .xml()
}

/// Bytes of the binary credential: every byte value, NUL and 0xff included.
fn blob() -> Vec<u8> {
    let mut b: Vec<u8> = (0..=255u8).collect();
    b.extend_from_slice(b"\0\xff\n\r tail");
    b
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length {}", s.len());
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {s:?}: {e}")))
        .collect()
}

/// The strings of a raw SMBIOS structure: after the formatted area (length in byte 1), NUL
/// terminated, ended by an empty string. Checks the type 11 count byte against them.
fn smbios11_strings(raw: &[u8]) -> Vec<Vec<u8>> {
    assert!(raw.len() >= 5, "SMBIOS structure too short: {raw:02x?}");
    assert_eq!(raw[0], 11, "not an SMBIOS type 11 structure");
    let formatted = raw[1] as usize;
    let mut strings = Vec::new();
    let mut rest = &raw[formatted..];
    loop {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .expect("SMBIOS string without NUL");
        if end == 0 {
            break;
        }
        strings.push(rest[..end].to_vec());
        rest = &rest[end + 1..];
    }
    assert_eq!(
        raw[4] as usize,
        strings.len(),
        "SMBIOS type 11 count byte does not match its strings"
    );
    strings
}

/// `<sysinfo type='smbios'><oemStrings><entry>` texts of a domain XML, in order.
fn oem_entries(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("rewritten XML parses");
    doc.descendants()
        .filter(|n| n.has_tag_name("sysinfo") && n.attribute("type") == Some("smbios"))
        .flat_map(|s| s.descendants().filter(|n| n.has_tag_name("entry")))
        .map(|e| e.text().unwrap_or("").to_string())
        .collect()
}

struct GuestReport {
    smbios11: Vec<Vec<u8>>,
    cmdline: String,
    uuid: String,
}

fn parse_serial(log: &[u8]) -> GuestReport {
    let text = String::from_utf8_lossy(log);
    let mut smbios11 = Vec::new();
    let mut cmdline = None;
    let mut uuid = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        let mut f = line.split(' ');
        match f.next() {
            Some("VSDPROOF-SMBIOS11") => {
                let _path = f.next();
                smbios11.extend(smbios11_strings(&unhex(f.next().unwrap_or(""))));
            }
            Some("VSDPROOF-NOSMBIOS11") => panic!("guest found no SMBIOS type 11 entry: {line}"),
            Some("VSDPROOF-CMDLINE") => {
                cmdline = Some(String::from_utf8(unhex(f.next().unwrap_or(""))).expect("utf-8"))
            }
            Some("VSDPROOF-UUID") => uuid = Some(f.collect::<Vec<_>>().join(" ")),
            _ => {}
        }
    }
    GuestReport {
        smbios11,
        cmdline: cmdline.expect("guest printed no VSDPROOF-CMDLINE"),
        uuid: uuid.expect("guest printed no VSDPROOF-UUID"),
    }
}

fn guest_proof(suite: &str) {
    let Some(lab) = Lab::up(suite) else { return };
    let t0 = Instant::now();

    // the guest: kernel from the lab, our init in a busybox initramfs
    lab.run(&[
        &format!("{CT_LAB}/guest/mkinitrd.sh"),
        &format!("{CT_BOOT}/proof-initrd.img"),
        &format!("{CT_LAB}/guest/proof-init.sh"),
    ]);
    lab.write_file("/root/proof.xml", domain_xml().as_bytes(), "644");
    lab.write_file("/root/blob.bin", &blob(), "600");

    // the project's binary, bind-mounted from the host's target directory
    let tricky = format!("tricky={TRICKY}");
    let spaced = format!("spaced={SPACED}");
    let bin = ct_bin("virt-systemd");
    let argv = [
        bin.as_str(),
        "rewrite",
        "/root/proof.xml",
        "-o",
        "/root/proof-vsd.xml",
        "--credential",
        &tricky,
        "--credential",
        &spaced,
        "--credential-file",
        "blob=/root/blob.bin",
        "--kernel-cmdline",
        CMDLINE_EXTRA,
        "--machine-id",
        "--hostname",
        "proof-guest",
        "--no-vsock",
    ];
    lab.run(&argv);
    let xml = String::from_utf8(lab.read_file("/root/proof-vsd.xml")).expect("utf-8 XML");
    let expected = oem_entries(&xml);

    // what the XML must say, independently of how the rewriter spells it
    let want_text = [
        format!("io.systemd.credential:tricky={TRICKY}"),
        format!("io.systemd.credential:spaced={SPACED}"),
        format!(
            "io.systemd.credential:system.machine_id={}",
            UUID.replace('-', "")
        ),
        "io.systemd.credential:system.hostname=proof-guest".to_string(),
    ];
    for w in &want_text {
        assert!(
            expected.contains(w),
            "rewritten XML lacks OEM string {w:?}; it has {expected:#?}\n{xml}"
        );
    }
    let b64 = expected
        .iter()
        .find_map(|e| e.strip_prefix("io.systemd.credential.binary:blob="))
        .unwrap_or_else(|| panic!("no binary credential blob in {expected:#?}"));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
        blob(),
        "binary credential in the XML does not decode to the file's bytes"
    );

    // define, start, wait for the guest's report
    lab.sh(&format!("rm -f {SERIAL}"));
    lab.virsh(&["define", "/root/proof-vsd.xml"]);
    let t_start = Instant::now();
    lab.virsh(&["start", NAME]);
    let log = lab.wait_for_text(SERIAL, "VSDPROOF-END", Duration::from_secs(300));
    let guest_secs = t_start.elapsed().as_secs_f64();
    // the guest powers itself off where the kernel can (sid's 7.x halts instead)
    let _ = lab.exec(&["virsh", "destroy", NAME]);

    // libvirt doubled the commas on QEMU's command line (what makes this test meaningful)
    let qemu_log =
        String::from_utf8_lossy(&lab.read_file(&format!("/var/log/libvirt/qemu/{NAME}.log")))
            .into_owned();
    assert!(
        qemu_log.contains("tricky=a,,b=c"),
        "expected libvirt to escape commas as ',,' on QEMU's argv:\n{qemu_log}"
    );

    let got = parse_serial(&log);
    let want: Vec<Vec<u8>> = expected.iter().map(|s| s.as_bytes().to_vec()).collect();
    if got.smbios11 != want {
        let show = |v: &Vec<Vec<u8>>| -> Vec<String> {
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        };
        panic!(
            "OEM strings in the guest differ from the domain XML\nguest: {:#?}\nXML:   {:#?}",
            show(&got.smbios11),
            show(&want)
        );
    }
    let b64 = got
        .smbios11
        .iter()
        .find_map(|s| s.strip_prefix(b"io.systemd.credential.binary:blob=".as_slice()))
        .expect("binary credential in the guest");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("guest base64"),
        blob(),
        "binary credential in the guest does not decode to the file's bytes"
    );
    let tokens: Vec<&str> = got.cmdline.split_whitespace().collect();
    let extra: Vec<&str> = CMDLINE_EXTRA.split_whitespace().collect();
    assert!(
        tokens.windows(extra.len()).any(|w| w == extra.as_slice()),
        "guest /proc/cmdline lacks {CMDLINE_EXTRA:?}: {:?}",
        got.cmdline
    );
    assert!(
        tokens.contains(&"console=ttyS0"),
        "guest /proc/cmdline lost the domain's own arguments: {:?}",
        got.cmdline
    );
    assert!(
        got.uuid.eq_ignore_ascii_case(UUID),
        "guest product UUID {:?} is not the domain UUID {UUID}",
        got.uuid
    );

    lab.virsh(&["undefine", NAME]);
    announce(&format!(
        "lab {suite}: guest proof ok: {} OEM strings, cmdline, UUID; guest reported {guest_secs:.1} s after start, test body {:.1} s",
        got.smbios11.len(),
        t0.elapsed().as_secs_f64()
    ));
}

#[test]
fn guest_proof_trixie() {
    guest_proof("trixie");
}

#[test]
fn guest_proof_bookworm() {
    guest_proof("bookworm");
}

#[test]
fn guest_proof_sid() {
    guest_proof("sid");
}
