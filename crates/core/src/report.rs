//! What a domain's XML says about virt-systemd: the recorded intent, what is rendered,
//! and the drift between them. Used by `show`, `status` and the hook's `prepare` check.
//! Reports carry credential names and sizes, never values.

use crate::credential::{self, classify, Oem, Value};
use crate::domain::{child, DomainXml, VsockFacts};
use crate::metadata::{self, CmdlineMode, ManagedCredential, Record};
use crate::render::current_value;
use crate::render::strip::{oem_entries, owned_oem, sysinfo};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub uuid: Option<String>,
    /// The domain carries a virt-systemd record.
    pub enabled: bool,
    pub intent: Option<Record>,
    pub rendered: Rendered,
    pub drift: Vec<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct Rendered {
    pub credentials: Vec<RenderedCredential>,
    pub smbios_mode: Option<String>,
    pub vsock: Option<VsockFacts>,
    /// The vhost-user socket of our vhost-user-vsock-pci device (user-space backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost_user_vsock: Option<String>,
    pub kernel_cmdline: Option<String>,
    /// `io.systemd.` OEM strings virt-systemd does not manage (labels only).
    pub unmanaged: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RenderedCredential {
    pub name: String,
    pub kind: credential::Kind,
    /// Decoded size in bytes; absent for fw_cfg files (read by QEMU at start).
    pub bytes: Option<usize>,
    pub managed: bool,
}

pub fn report(d: &DomainXml) -> crate::error::Result<Report> {
    let facts = d.facts();
    let record = metadata::read(d)?;
    let mut rendered = Rendered {
        smbios_mode: d
            .top("os")
            .and_then(|o| child(o, "smbios"))
            .and_then(|s| s.attribute("mode"))
            .map(str::to_string),
        vsock: facts.vsock.clone(),
        vhost_user_vsock: crate::render::vhost_user::rendered_socket(d),
        kernel_cmdline: d
            .top("os")
            .and_then(|o| child(o, "cmdline"))
            .and_then(|c| c.text())
            .map(str::to_string),
        ..Rendered::default()
    };
    for e in oem_entries(d) {
        let s = e.text().unwrap_or("");
        let managed = record.as_ref().is_some_and(|r| owned_oem(r, s));
        match classify(s) {
            Oem::Credential {
                name,
                binary,
                value,
            } => {
                let bytes = credential::decode_value(binary, value).map(|v| match v {
                    Value::Text(t) => t.len(),
                    Value::Binary(b) => b.len(),
                    Value::File(_) => 0,
                });
                rendered.credentials.push(RenderedCredential {
                    name: name.to_string(),
                    kind: if binary {
                        credential::Kind::Binary
                    } else {
                        credential::Kind::Text
                    },
                    bytes,
                    managed,
                });
                if !managed {
                    rendered.unmanaged.push(format!("credential {name}"));
                }
            }
            Oem::StubCmdline(_) | Oem::BootCmdline(_) | Oem::OtherSystemd if !managed => rendered
                .unmanaged
                .push(s.split('=').next().unwrap_or("").to_string()),
            _ => {}
        }
    }
    if let Some(fw) = sysinfo(d, "fwcfg") {
        for e in crate::domain::children(fw, "entry") {
            if let Some(n) = e
                .attribute("name")
                .and_then(|n| n.strip_prefix(credential::FWCFG_PREFIX))
            {
                let managed = record
                    .as_ref()
                    .and_then(|r| r.credential(n))
                    .is_some_and(|c| c.kind == credential::Kind::Fwcfg);
                rendered.credentials.push(RenderedCredential {
                    name: n.to_string(),
                    kind: credential::Kind::Fwcfg,
                    bytes: None,
                    managed,
                });
            }
        }
    }
    let drift = record
        .as_ref()
        .map(|r| drift(d, &facts, r))
        .unwrap_or_default();
    Ok(Report {
        name: facts.name,
        uuid: facts.uuid,
        enabled: record.is_some(),
        intent: record,
        rendered,
        drift,
    })
}

/// Differences between the record and what the document renders.
/// `facts` are `d.facts()`, which callers already have.
pub fn drift(d: &DomainXml, facts: &crate::domain::Facts, r: &Record) -> Vec<String> {
    let mut out = Vec::new();
    for mc in &r.credentials {
        if current_value(d, mc).is_none() {
            out.push(format!("credential {}: entry missing", mc.name));
        }
    }
    let text_cred = |name: &str| {
        current_value(
            d,
            &ManagedCredential {
                name: name.into(),
                kind: credential::Kind::Text,
            },
        )
    };
    if r.machine_id {
        let want = facts
            .uuid
            .as_deref()
            .and_then(|u| uuid::Uuid::parse_str(u).ok())
            .map(|u| u.simple().to_string());
        match (text_cred(credential::MACHINE_ID), want) {
            (Some(Value::Text(v)), Some(w)) if v == w => {}
            (None, _) => out.push("machine ID credential missing".into()),
            _ => out.push("machine ID credential does not match the domain <uuid>".into()),
        }
    }
    if let Some(p) = r.notify {
        match text_cred(credential::NOTIFY_SOCKET) {
            Some(Value::Text(v)) if v == format!("vsock-stream:2:{p}") => {}
            Some(_) => out.push(format!("readiness socket is not vsock-stream:2:{p}")),
            None => out.push("readiness socket credential missing".into()),
        }
    }
    match (&r.vhost_user_vsock, r.vsock) {
        (Some(sock), true) => {
            use crate::render::vhost_user;
            match vhost_user::rendered_socket(d) {
                Some(p) if p == *sock => {}
                Some(_) => out.push("vhost-user vsock device points at another socket".into()),
                None => out.push("vhost-user vsock device missing (<qemu:commandline>)".into()),
            }
            if !vhost_user::shared_memory(d) {
                out.push(
                    "shared memfd <memoryBacking> missing: the vhost-user vsock device needs it"
                        .into(),
                );
            }
        }
        (None, true) if facts.vsock.is_none() => out.push("vsock device missing".into()),
        _ => {}
    }
    let has_oem = oem_entries(d)
        .iter()
        .any(|e| owned_oem(r, e.text().unwrap_or("")));
    let mode = d
        .top("os")
        .and_then(|o| child(o, "smbios"))
        .and_then(|s| s.attribute("mode"));
    if has_oem && mode != Some("sysinfo") {
        out.push(
            "<os><smbios mode='sysinfo'/> missing: libvirt will not pass the OEM strings".into(),
        );
    }
    if let Some(k) = &r.kernel_cmdline {
        let ok = match k.mode {
            CmdlineMode::Append | CmdlineMode::Created => d
                .top("os")
                .and_then(|o| child(o, "cmdline"))
                .and_then(|c| c.text())
                .is_some_and(|t| t.ends_with(&k.args)),
            CmdlineMode::Oem => oem_entries(d)
                .iter()
                .any(|e| classify(e.text().unwrap_or("")) == Oem::StubCmdline(&k.args)),
        };
        if !ok {
            out.push("kernel command line extension missing".into());
        }
    }
    out
}
