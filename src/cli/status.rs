//! `virt-systemd status`: one row per domain, as a table for people or JSON for scripts.
//! Pure: the binary gathers the inputs (libvirt, the hook's state files, machined).
//!
//! # JSON schema (version 1)
//! ```text
//! {
//!   "version": 1,
//!   "machined": null | "<why machined could not be asked>",
//!   "domains": [ {
//!     "name": string,
//!     "uuid": string | null,
//!     "persistent": bool,            // false: transient domain
//!     "state": string,               // libvirt state: "running", "shut off", "paused", …
//!     "running": bool,               // an active domain (running, paused, …)
//!     "enabled": bool,               // the definition carries virt-systemd's record
//!     "credentials": [string],       // names of the credentials we manage (never values)
//!     "unmanaged": [string],         // io.systemd.* OEM strings we leave alone (labels)
//!     "vsock": bool,                 // the definition has a vsock device (kernel or vhost-user)
//!     "vsock_cid": u32 | null,       // the running domain's CID (live XML)
//!     "machine": null | {            // machined's view, when a machine was found
//!       "name": string, "state": string|null, "service": string|null,
//!       "class": string|null, "id": string|null, "leader": u32|null,
//!       "unit": string|null, "vsock_cid": u32|null
//!     },
//!     "registered": bool | null,     // hook state says it registered (null: no state file)
//!     "readiness": null | {          // what the guest reported this boot (notify listener)
//!       "ready": bool, "status": string|null, "ssh": bool
//!     },
//!     "drift": [string],             // intent vs rendered XML differences
//!     "restart_pending": bool,       // running with an older definition than the saved one
//!     "machinectl": null | "control" | "signals"
//!                                    // how machinectl reaches it: not at all (no machine),
//!                                    // through its control socket and libvirt (systemd ≥
//!                                    // 261), or only by machined's signals, which end the
//!                                    // VM (crate::machinectl)
//!   } ]
//! }
//! ```
//! Fields are only ever added; a change of meaning bumps `version`.

use crate::domain::DomainXml;
use crate::error::Result;
use crate::observe::MachineView;
use crate::report::report;
use crate::state::DomainState;
use serde::Serialize;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Status {
    pub version: u32,
    /// Why machined could not be asked (`None`: it was, or nothing needed asking).
    pub machined: Option<String>,
    pub domains: Vec<Row>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub uuid: Option<String>,
    pub persistent: bool,
    pub state: String,
    pub running: bool,
    pub enabled: bool,
    pub credentials: Vec<String>,
    pub unmanaged: Vec<String>,
    pub vsock: bool,
    pub vsock_cid: Option<u32>,
    pub machine: Option<MachineView>,
    pub registered: Option<bool>,
    pub readiness: Option<ReadinessView>,
    pub drift: Vec<String>,
    pub restart_pending: bool,
    pub machinectl: Option<&'static str>,
}

/// The guest's readiness report in its current boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadinessView {
    pub ready: bool,
    /// Last STATUS= (what the guest is doing).
    pub status: Option<String>,
    /// ssh-access.target is active: `virt-systemd ssh` can connect.
    pub ssh: bool,
}

/// What the binary gathered about one domain.
#[derive(Debug, Default)]
pub struct Input {
    pub name: String,
    pub uuid: Option<String>,
    pub persistent: bool,
    pub state: String,
    pub running: bool,
    /// Persistent definition (inactive XML); `None` for a transient domain.
    pub inactive_xml: Option<String>,
    /// Live XML of an active domain.
    pub live_xml: Option<String>,
    pub hook_state: Option<DomainState>,
    pub machine: Option<MachineView>,
    pub readiness: Option<crate::notify::protocol::Readiness>,
}

/// Machine names worth asking machined about, best first: what the hook recorded, the name
/// the hook would pick, and libvirt's own `qemu-ID-NAME`.
pub fn machine_candidates(
    name: &str,
    uuid: Option<&str>,
    id: Option<u32>,
    st: Option<&DomainState>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = st.and_then(|s| s.machine.clone()) {
        out.push(m);
    }
    if let Some(u) = uuid.and_then(|u| uuid::Uuid::parse_str(u).ok()) {
        out.push(crate::machined::machine_name(name, &u.simple().to_string()));
    }
    if let Some(id) = id {
        out.push(libvirt_machine_name(name, id));
    }
    out.dedup();
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// The name libvirt gives its own machined registration (`virDomainMachineNameGetDefault`,
/// libvirt ≥ 3.x): `qemu-ID-` then the domain name without characters outside
/// `[A-Za-z0-9-.]`, runs of `-`/`.` collapsed, at most 64 bytes, no trailing `-`/`.`.
pub fn libvirt_machine_name(name: &str, id: u32) -> String {
    let mut b = format!("qemu-{id}-");
    let mut skip = true;
    for c in name.chars() {
        if b.len() >= 64 {
            break;
        }
        if c == '.' || c == '-' {
            if !skip {
                b.push(c);
            }
            skip = true;
            continue;
        }
        skip = false;
        if c.is_ascii_alphanumeric() {
            b.push(c);
        }
    }
    b.trim_end_matches(['-', '.']).to_string()
}

pub fn row(i: Input) -> Result<Row> {
    let config = i.inactive_xml.as_deref().or(i.live_xml.as_deref());
    let (enabled, credentials, unmanaged, vsock, drift, record) = match config {
        Some(x) => {
            let d = DomainXml::parse(x)?;
            let r = report(&d)?;
            (
                r.enabled,
                r.rendered
                    .credentials
                    .iter()
                    .filter(|c| c.managed)
                    .map(|c| c.name.clone())
                    .collect(),
                r.rendered.unmanaged.clone(),
                r.rendered.vsock.is_some() || r.rendered.vhost_user_vsock.is_some(),
                r.drift.clone(),
                r.intent,
            )
        }
        None => (false, vec![], vec![], false, vec![], None),
    };
    let live = match (&i.live_xml, i.running) {
        (Some(x), true) => Some(DomainXml::parse(x)?),
        _ => None,
    };
    let vsock_cid = live
        .as_ref()
        .and_then(|d| d.facts().vsock)
        .and_then(|v| v.cid);
    let restart_pending = match (&live, i.persistent && i.inactive_xml.is_some()) {
        (Some(d), true) => crate::metadata::read(d)? != record,
        _ => false,
    };
    // Our registration carries the control address only when it went over varlink.
    let control = i
        .hook_state
        .as_ref()
        .is_some_and(|s| s.registered && s.api == Some(crate::machined::Api::Varlink))
        && i.machine.as_ref().and_then(|m| m.service.as_deref()) == Some("virt-systemd");
    let machinectl = crate::machinectl::reach(i.running && i.machine.is_some(), control);
    Ok(Row {
        name: i.name,
        uuid: i.uuid,
        persistent: i.persistent,
        state: i.state,
        running: i.running,
        enabled,
        credentials,
        unmanaged,
        vsock,
        vsock_cid,
        machine: i.machine,
        registered: i.hook_state.as_ref().map(|s| s.registered),
        readiness: i.readiness.as_ref().map(|r| ReadinessView {
            ready: r.ready,
            status: r.status.clone(),
            ssh: r.ssh(),
        }),
        drift,
        restart_pending,
        machinectl,
    })
}

/// The table for people, then one line per thing that needs attention.
pub fn table(s: &Status) -> String {
    let head = [
        "DOMAIN",
        "STATE",
        "ENABLED",
        "CREDENTIALS",
        "CID",
        "MACHINE",
        "READY",
        "DRIFT",
    ];
    let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 8]> = s
        .domains
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                if r.persistent {
                    r.state.clone()
                } else {
                    format!("{} (transient)", r.state)
                },
                if r.enabled { "yes" } else { "no" }.into(),
                if r.credentials.is_empty() {
                    "-".into()
                } else {
                    r.credentials.join(",")
                },
                dash(r.vsock_cid.map(|c| c.to_string())),
                dash(r.machine.as_ref().map(|m| match &m.state {
                    Some(st) => format!("{} ({st})", m.name),
                    None => m.name.clone(),
                })),
                dash(r.readiness.as_ref().map(|x| {
                    match (x.ready, x.ssh) {
                        (true, true) => "ready+ssh",
                        (true, false) => "ready",
                        (false, _) => "booting",
                    }
                    .to_string()
                })),
                if !r.enabled {
                    "-".into()
                } else if r.drift.is_empty() {
                    "no".into()
                } else {
                    "yes".into()
                },
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l += c;
            } else {
                l += &format!("{c:<width$}  ", width = w[i]);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(&head.map(String::from));
    for r in &rows {
        out += &line(r);
    }
    for r in &s.domains {
        for d in &r.drift {
            out += &format!("{}: drift: {d}\n", r.name);
        }
        if r.restart_pending {
            out += &format!(
                "{}: the saved definition differs from the running one; it takes effect at the next start\n",
                r.name
            );
        }
        for u in &r.unmanaged {
            out += &format!("{}: not managed by virt-systemd: {u}\n", r.name);
        }
    }
    if let Some(m) = &s.machined {
        out += &format!("machined: {m}\n");
    }
    let reached: Vec<&str> = s
        .domains
        .iter()
        .filter(|r| r.machinectl == Some("signals"))
        .map(|r| r.name.as_str())
        .collect();
    if !reached.is_empty() {
        out += &format!("{}: {}\n", reached.join(", "), crate::machinectl::advice());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "<domain type='kvm'>\n  <name>web_1</name>\n  <uuid>0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0</uuid>\n  <os>\n    <type>hvm</type>\n  </os>\n  <devices>\n  </devices>\n</domain>\n";

    fn enabled() -> String {
        let req = crate::intent::Request {
            hostname: Some("web".into()),
            credentials: vec![crate::credential::Credential {
                name: "secret.token".into(),
                value: crate::credential::Value::Text("s3cr3t-VALUE".into()),
            }],
            ..Default::default()
        };
        crate::render::rewrite(PLAIN, &Default::default(), &req, &|| unreachable!())
            .unwrap()
            .text
    }

    #[test]
    fn rows_never_carry_values() {
        let x = enabled();
        let r = row(Input {
            name: "web_1".into(),
            uuid: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
            persistent: true,
            state: "running".into(),
            running: true,
            inactive_xml: Some(x.clone()),
            live_xml: Some(PLAIN.replace("<domain type='kvm'>", "<domain type='kvm' id='3'>")
                .replace("<devices>\n", "<devices>\n    <vsock model='virtio'><cid auto='yes' address='7'/></vsock>\n")),
            readiness: Some(crate::notify::protocol::Readiness {
                ready: true,
                status: Some("Startup finished".into()),
                units_active: ["ssh-access.target".to_string()].into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            r.readiness,
            Some(ReadinessView {
                ready: true,
                status: Some("Startup finished".into()),
                ssh: true
            })
        );
        assert!(r.enabled);
        assert_eq!(
            r.credentials,
            vec!["system.hostname", "secret.token", "vmm.notify_socket"]
        );
        assert_eq!(r.vsock_cid, Some(7));
        assert!(r.restart_pending, "live XML has no record yet");
        assert!(r.drift.is_empty(), "{:?}", r.drift);
        let s = Status {
            version: SCHEMA_VERSION,
            machined: None,
            domains: vec![r],
        };
        let json = serde_json::to_string(&s).unwrap();
        let t = table(&s);
        for out in [&json, &t] {
            assert!(!out.contains("s3cr3t"), "{out}");
        }
        assert!(
            t.starts_with("DOMAIN  STATE    ENABLED  CREDENTIALS"),
            "{t}"
        );
        assert!(t.contains("next start"), "{t}");
        assert!(t.contains("ready+ssh"), "{t}");
    }

    #[test]
    fn not_enabled_and_transient() {
        let r = row(Input {
            name: "web_1".into(),
            persistent: false,
            state: "running".into(),
            running: true,
            live_xml: Some(PLAIN.into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!r.enabled && !r.restart_pending && r.credentials.is_empty());
        let t = table(&Status {
            version: 1,
            machined: Some("unreachable".into()),
            domains: vec![r],
        });
        assert!(t.contains("running (transient)  no"), "{t}");
        assert!(t.ends_with("machined: unreachable\n"), "{t}");
    }

    #[test]
    fn machinectl_reach_and_advice() {
        let running = |name: &str, machine: bool| {
            row(Input {
                name: name.into(),
                persistent: true,
                state: "running".into(),
                running: true,
                live_xml: Some(PLAIN.into()),
                machine: machine.then(|| MachineView {
                    name: name.into(),
                    state: Some("running".into()),
                    service: Some("libvirt-qemu".into()),
                    class: None,
                    id: None,
                    leader: Some(42),
                    unit: None,
                    vsock_cid: None,
                }),
                ..Default::default()
            })
            .unwrap()
        };
        let (a, b) = (running("a", true), running("b", false));
        assert_eq!(a.machinectl, Some("signals"));
        assert_eq!(b.machinectl, None);
        let stopped = row(Input {
            name: "c".into(),
            state: "shut off".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(stopped.machinectl, None);
        let s = Status {
            version: SCHEMA_VERSION,
            machined: None,
            domains: vec![a, b, stopped],
        };
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(json["domains"][0]["machinectl"], "signals");
        assert!(json["domains"][1]["machinectl"].is_null());
        // One line names the registered domains, the harmful verbs and what to use.
        let t = table(&s);
        let last = t.lines().last().unwrap();
        assert!(
            last.starts_with("a: machinectl poweroff|reboot|terminate|kill "),
            "{t}"
        );
        assert!(last.contains("reboot → virsh reboot"), "{t}");
        // Nothing registered: no advice.
        let t = table(&Status {
            domains: vec![running("b", false)],
            ..s
        });
        assert!(!t.contains("machinectl"), "{t}");
    }

    #[test]
    fn candidates() {
        let st = DomainState {
            machine: Some("web-1-x".into()),
            ..Default::default()
        };
        assert_eq!(
            machine_candidates(
                "web_1",
                Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
                Some(4),
                Some(&st)
            ),
            vec!["web-1-x", "web-1", "qemu-4-web1"]
        );
        assert_eq!(
            machine_candidates("a", None, None, None),
            Vec::<String>::new()
        );
        assert_eq!(libvirt_machine_name("tiny", 1), "qemu-1-tiny");
        assert_eq!(libvirt_machine_name("-a..b_c-", 12), "qemu-12-a.bc");
        assert_eq!(libvirt_machine_name(&"x".repeat(80), 1).len(), 64);
    }
}
