//! Property tests of the rewriter over generated domain documents in many layouts:
//! idempotence, strip∘rewrite = identity, well-formed output, foreign bytes kept, and
//! that what was asked for is what is rendered.

use proptest::prelude::*;
use virt_systemd_core::config::RewriteDefaults;
use virt_systemd_core::credential::{Credential, Kind, Value};
use virt_systemd_core::domain::DomainXml;
use virt_systemd_core::intent::Request;
use virt_systemd_core::metadata::ManagedCredential;
use virt_systemd_core::render::{self, current_value, strip::Mode};
use virt_systemd_core::report;

const UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

#[derive(Debug, Clone)]
struct Layout {
    bom: bool,
    decl: bool,
    crlf: bool,
    unit: &'static str,
    one_line: bool,
    quote: char,
    comments: bool,
    uuid: bool,
    metadata: u8, // 0 none, 1 self-closing, 2 foreign content
    sysinfo: u8,  // 0 none, 1 bios block only, 2 oemStrings with foreign entries
    smbios: bool,
    kernel: u8,  // 0 none, 1 kernel no cmdline, 2 kernel + cmdline
    devices: u8, // 0 none, 1 self-closing, 2 with disk+nic, 3 with own vsock
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop_oneof![Just("  "), Just("\t"), Just("    ")],
        prop::bool::weighted(0.2),
        prop_oneof![Just('\''), Just('"')],
        (any::<bool>(), any::<bool>(), 0u8..3, 0u8..3, any::<bool>()),
        (0u8..3, 0u8..4),
    )
        .prop_map(
            |(
                (bom, decl, crlf),
                unit,
                one_line,
                quote,
                (comments, uuid, metadata, sysinfo, smbios),
                (kernel, devices),
            )| Layout {
                bom,
                decl,
                crlf,
                unit,
                one_line,
                quote,
                comments,
                uuid,
                metadata,
                sysinfo,
                smbios,
                kernel,
                devices,
            },
        )
}

/// Build a document as a tree of lines, then lay it out.
fn build(l: &Layout) -> String {
    let q = l.quote;
    let mut lines: Vec<(usize, String)> = vec![];
    let mut add = |depth: usize, s: String| lines.push((depth, s));
    add(
        0,
        format!(
            "<domain type={q}kvm{q} xmlns:qemu={q}http://libvirt.org/schemas/domain/qemu/1.0{q}>"
        ),
    );
    add(1, "<name>prop-vm</name>".into());
    if l.uuid {
        add(1, format!("<uuid>{UUID}</uuid>"));
    }
    if l.comments {
        add(
            1,
            "<!-- keep me: <entry>io.systemd.credential:x=1</entry> -->".into(),
        );
    }
    match l.metadata {
        1 => add(1, "<metadata/>".into()),
        2 => {
            add(1, "<metadata>".into());
            add(2, format!("<app:info xmlns:app={q}http://example.com/app{q} a={q}1{q}>x &amp; y</app:info>"));
            add(1, "</metadata>".into());
        }
        _ => {}
    }
    add(1, format!("<memory unit={q}KiB{q}>1048576</memory>"));
    match l.sysinfo {
        1 => {
            add(1, format!("<sysinfo type={q}smbios{q}>"));
            add(2, "<bios>".into());
            add(3, format!("<entry name={q}vendor{q}>ACME</entry>"));
            add(2, "</bios>".into());
            add(1, "</sysinfo>".into());
        }
        2 => {
            add(1, format!("<sysinfo type={q}smbios{q}>"));
            add(2, "<oemStrings>".into());
            add(3, "<entry>foreign, string</entry>".into());
            add(
                3,
                "<entry>io.systemd.credential:handmade=kept</entry>".into(),
            );
            add(2, "</oemStrings>".into());
            add(1, "</sysinfo>".into());
        }
        _ => {}
    }
    add(1, "<os>".into());
    add(
        2,
        format!("<type arch={q}x86_64{q} machine={q}q35{q}>hvm</type>"),
    );
    if l.kernel >= 1 {
        add(2, "<kernel>/boot/vmlinuz</kernel>".into());
        add(2, "<initrd>/boot/initrd.img</initrd>".into());
    }
    if l.kernel == 2 {
        add(2, "<cmdline>console=ttyS0 root=/dev/vda1</cmdline>".into());
    }
    if l.smbios {
        add(2, format!("<smbios mode={q}sysinfo{q}/>"));
    }
    add(1, "</os>".into());
    match l.devices {
        1 => add(1, "<devices/>".into()),
        2 | 3 => {
            add(1, "<devices>".into());
            add(2, format!("<disk type={q}file{q} device={q}disk{q}><source file={q}/a b.img{q}/><target dev={q}vda{q}/></disk>"));
            add(
                2,
                format!(
                    "<interface type={q}network{q}><source network={q}default{q}/></interface>"
                ),
            );
            if l.devices == 3 {
                add(
                    2,
                    format!(
                        "<vsock model={q}virtio{q}><cid auto={q}no{q} address={q}9{q}/></vsock>"
                    ),
                );
            }
            add(1, "</devices>".into());
        }
        _ => {}
    }
    add(
        1,
        "<qemu:commandline><qemu:arg value='-S'/></qemu:commandline>".into(),
    );
    add(0, "</domain>".into());

    let nl = if l.crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    if l.bom {
        out.push('\u{feff}');
    }
    if l.decl {
        out += &format!("<?xml version={q}1.0{q} encoding={q}UTF-8{q}?>{nl}");
        if l.comments {
            out += &format!("<!-- top-level comment -->{nl}<?app pi?>{nl}");
        }
    }
    for (d, s) in lines {
        if l.one_line {
            out += &s;
        } else {
            out += &l.unit.repeat(d);
            out += &s;
            out += nl;
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Ask {
    creds: Vec<(String, Vec<u8>, bool)>,
    hostname: bool,
    machine_id: bool,
    cmdline: Option<String>,
    vsock: Option<bool>,
    notify: Option<bool>,
}

fn value_text() -> impl Strategy<Value = String> {
    // Commas, '=', quotes, markup, spaces, newlines, tabs, CR and non-ASCII.
    prop::collection::vec(
        prop_oneof![
            Just(','),
            Just('='),
            Just('"'),
            Just('\''),
            Just('<'),
            Just('>'),
            Just('&'),
            Just(' '),
            Just('\n'),
            Just('\t'),
            Just('\r'),
            Just('é'),
            Just('€'),
            Just('𝄞'),
            prop::char::range('a', 'z'),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        prop::collection::vec(
            (
                "[a-z][a-z0-9._-]{0,12}",
                prop_oneof![
                    value_text().prop_map(|s| (s.into_bytes(), false)),
                    prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (b, true)),
                ],
            )
                .prop_map(|(n, (v, b))| (n, v, b)),
            0..4,
        ),
        any::<bool>(),
        any::<bool>(),
        prop::option::of("[a-z]{1,6}=[a-z0-9,]{0,6}( [a-z]{1,4})?"),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(creds, hostname, machine_id, cmdline, vsock, notify)| Ask {
                creds,
                hostname,
                machine_id,
                cmdline,
                vsock,
                notify,
            },
        )
}

fn request(a: &Ask) -> Request {
    let mut r = Request::default();
    for (n, v, binary) in &a.creds {
        if n == "handmade" || r.credentials.iter().any(|c: &Credential| &c.name == n) {
            continue;
        }
        r.credentials.push(Credential {
            name: n.clone(),
            value: if *binary {
                Value::Binary(v.clone())
            } else {
                Value::Text(String::from_utf8(v.clone()).unwrap())
            },
        });
    }
    if a.hostname {
        r.hostname = Some("prop-vm.example".into());
    }
    r.machine_id = Some(a.machine_id);
    r.kernel_cmdline = a.cmdline.iter().cloned().collect();
    r.vsock = a.vsock;
    r.notify = a.notify;
    r
}

fn rewrite(text: &str, r: &Request) -> String {
    render::rewrite(text, &RewriteDefaults::default(), r, &|| UUID.to_string())
        .expect("rewrite")
        .text
}

proptest! {
    // PROPTEST_CASES=N for a longer soak; 400 keeps the default run short.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn rewrite_laws(l in layout(), a in ask()) {
        let input = build(&l);
        let req = request(&a);
        let out = rewrite(&input, &req);

        // Well-formed, still a domain.
        let d = DomainXml::parse(&out).expect("output parses");

        // Idempotent with the same flags, and with none (the record carries the intent).
        prop_assert_eq!(&rewrite(&out, &req), &out);
        prop_assert_eq!(&rewrite(&out, &Request::default()), &out);

        // Reversible to the byte.
        let back = render::strip(&out, Mode::Full).unwrap().text;
        prop_assert_eq!(&back, &input);

        // Bytes we do not own are still there.
        for keep in ["<!-- keep me: <entry>io.systemd.credential:x=1</entry> -->",
                     "<entry>io.systemd.credential:handmade=kept</entry>",
                     "<qemu:commandline><qemu:arg value='-S'/></qemu:commandline>",
                     "x &amp; y</app:info>", "<?app pi?>"] {
            prop_assert_eq!(input.contains(keep), out.contains(keep), "{}", keep);
        }
        prop_assert_eq!(input.starts_with('\u{feff}'), out.starts_with('\u{feff}'));
        prop_assert_eq!(input.matches("\r\n").count() > 0, out.matches("\r\n").count() > 0);
        let lf_in_values = req.credentials.iter().any(|c| matches!(&c.value, Value::Text(t) if t.contains('\n')));
        if l.crlf && !l.one_line && !lf_in_values {
            prop_assert_eq!(out.matches('\n').count(), out.matches("\r\n").count());
        }

        // What was asked for is rendered, with exact values, and nothing drifts.
        for c in &req.credentials {
            let got = current_value(&d, &ManagedCredential { name: c.name.clone(), kind: c.kind() });
            prop_assert_eq!(got.as_ref(), Some(&c.value), "credential {}", c.name);
        }
        let rep = report::report(&d).unwrap();
        prop_assert!(rep.drift.is_empty(), "drift: {:?}", rep.drift);
        let want_vsock = a.vsock.unwrap_or(true) || l.devices == 3;
        prop_assert_eq!(d.facts().vsock.is_some(), want_vsock);
        if l.devices == 3 {
            prop_assert!(out.contains("address=") && out.matches("<vsock").count() == 1);
        }
        let notify = out.contains("vmm.notify_socket=vsock-stream:2:8742");
        prop_assert_eq!(notify, a.notify.unwrap_or(true));
        if a.machine_id {
            let want = format!("system.machine_id={}", UUID.replace('-', ""));
            prop_assert!(out.contains(&want));
        }
        if let Some(k) = &a.cmdline {
            if l.kernel > 0 {
                let cmdline = d.top("os").unwrap().children().find(|c| c.is_element() && c.tag_name().name() == "cmdline").unwrap();
                prop_assert!(cmdline.text().unwrap().ends_with(k.as_str()));
            } else {
                let want = format!("io.systemd.stub.kernel-cmdline-extra={k}");
                prop_assert!(out.contains(&want));
            }
        }
    }

    #[test]
    fn vhost_user_vsock_laws(l in layout(), a in ask()) {
        // The user-space backend's device lives in a <qemu:commandline> of ours: a domain
        // with its own is refused (unit tests), so these layouts have none.
        prop_assume!(l.devices != 3);
        let input = build(&l).replace("<qemu:commandline><qemu:arg value='-S'/></qemu:commandline>", "");
        let mut req = request(&a);
        req.vsock = Some(true);
        req.vhost_user_vsock = Some("/run/user/1000/virt-systemd/vsock/a,b/vhost.sock".into());
        let out = rewrite(&input, &req);
        let d = DomainXml::parse(&out).expect("output parses");
        prop_assert_eq!(&rewrite(&out, &req), &out);
        prop_assert_eq!(&rewrite(&out, &Request::default()), &out);
        prop_assert_eq!(&render::strip(&out, Mode::Full).unwrap().text, &input);
        prop_assert!(d.facts().vsock.is_none(), "no kernel vsock device");
        let rep = report::report(&d).unwrap();
        prop_assert!(rep.drift.is_empty(), "drift: {:?}", rep.drift);
        prop_assert_eq!(rep.rendered.vhost_user_vsock.as_deref(), Some("/run/user/1000/virt-systemd/vsock/a,b/vhost.sock"));
        prop_assert!(out.contains("socket,id=vsdvsock,path=/run/user/1000/virt-systemd/vsock/a,,b/vhost.sock"));
        prop_assert!(out.contains("vhost-user-vsock-pci,chardev=vsdvsock,bus=pcie.0,addr=0x10"));
        let mb = d.top("memoryBacking").expect("memoryBacking");
        prop_assert!(mb.children().any(|c| c.attribute("type") == Some("memfd")));
        prop_assert!(mb.children().any(|c| c.attribute("mode") == Some("shared")));
        prop_assert!(out.contains("vhost-user="));
        // Turned off again: nothing of the backend's is left, and strip still restores.
        let off = rewrite(&out, &Request { vsock: Some(false), ..Request::default() });
        prop_assert!(!off.contains("vhost-user") && !off.contains("memoryBacking"), "{}", off);
        prop_assert_eq!(&render::strip(&off, Mode::Full).unwrap().text, &input);
    }

    #[test]
    fn changing_intent_then_stripping_restores(l in layout(), a in ask(), b in ask()) {
        // A second rewrite with different wishes, then strip: still the original bytes.
        let input = build(&l);
        let once = rewrite(&input, &request(&a));
        let twice = rewrite(&once, &request(&b));
        DomainXml::parse(&twice).expect("output parses");
        prop_assert_eq!(render::strip(&twice, Mode::Full).unwrap().text, input);
    }
}

#[test]
fn kinds_round_trip_through_the_record() {
    let input = build(&Layout {
        bom: false,
        decl: false,
        crlf: false,
        unit: "  ",
        one_line: false,
        quote: '\'',
        comments: false,
        uuid: true,
        metadata: 0,
        sysinfo: 0,
        smbios: false,
        kernel: 0,
        devices: 2,
    });
    let mut r = Request::default();
    r.credentials.push(Credential {
        name: "bin".into(),
        value: Value::Binary(vec![0, 255, 10]),
    });
    r.credentials.push(Credential {
        name: "sec".into(),
        value: Value::File("/etc/secret key".into()),
    });
    let out = rewrite(&input, &r);
    let d = DomainXml::parse(&out).unwrap();
    let rec = virt_systemd_core::metadata::read(&d).unwrap().unwrap();
    assert_eq!(rec.credential("bin").unwrap().kind, Kind::Binary);
    assert_eq!(rec.credential("sec").unwrap().kind, Kind::Fwcfg);
    assert!(out.contains("<entry name='opt/io.systemd.credentials/sec' file='/etc/secret key'/>"));
    assert!(out.contains("io.systemd.credential.binary:bin=AP8K"));
}
