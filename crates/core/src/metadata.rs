//! The record virt-systemd keeps in the domain's `<metadata>`: what it manages and what
//! it created, so later runs update or remove exactly its own entries.
//!
//! Read semantically (namespace URI and local names), because libvirt re-serialises the
//! element on define with its own prefixes, quotes and indentation.

use crate::credential::Kind;
use crate::domain::{child, DomainXml};
use crate::error::{Error, Result};
use crate::xmltext::{escape_attr, escape_text};
use crate::xtree::Node;
use crate::{METADATA_ELEMENT, METADATA_NS};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManagedCredential {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CmdlineMode {
    /// Appended to an existing `<os><cmdline>`.
    Append,
    /// `<os><cmdline>` created by us.
    Created,
    /// OEM strings `io.systemd.{stub,boot}.kernel-cmdline-extra=`.
    Oem,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelCmdline {
    pub args: String,
    pub mode: CmdlineMode,
}

/// Structure we added to the document, so `--strip` can remove it again.
pub const CREATED_TOKENS: &[&str] = &[
    "metadata",
    "uuid",
    "sysinfo",
    "oemStrings",
    "fwcfg",
    "smbios",
    "devices",
    "memoryBacking",
    "qemu:commandline",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    pub credentials: Vec<ManagedCredential>,
    pub machine_id: bool,
    /// vsock port of the readiness socket; `None`: readiness is off.
    pub notify: Option<u32>,
    /// vsock wanted.
    pub vsock: bool,
    /// The vsock device is ours (we added it).
    pub vsock_added: bool,
    /// The vsock device is a vhost-user one (in `<qemu:commandline>`, ours) served by a
    /// user-space backend at this socket.
    pub vhost_user_vsock: Option<String>,
    pub kernel_cmdline: Option<KernelCmdline>,
    /// Elements we created (tokens from `CREATED_TOKENS`).
    pub created: Vec<String>,
    /// Self-closing elements we opened to add children (`devices`, `os`, …).
    pub expanded: Vec<String>,
    /// `<os><smbios mode=…>`'s raw attribute text before `--force` switched it to
    /// `sysinfo`.
    pub smbios_was: Option<String>,
}

impl Record {
    pub fn created(&self, what: &str) -> bool {
        self.created.iter().any(|c| c == what)
    }
    pub fn expanded(&self, what: &str) -> bool {
        self.expanded.iter().any(|c| c == what)
    }
    pub fn credential(&self, name: &str) -> Option<&ManagedCredential> {
        self.credentials.iter().find(|c| c.name == name)
    }

    /// Render as our `<metadata>` child. `indent` is the element's own indentation,
    /// `unit` one level more; `nl` the document's line break (empty for one-line docs).
    pub fn to_xml(&self, q: char, nl: &str, indent: &str, unit: &str) -> String {
        let a = |s: &str| escape_attr(s, q);
        let inner = format!("{nl}{indent}{unit}");
        let mut s = format!("<vsd:{METADATA_ELEMENT} xmlns:vsd={q}{METADATA_NS}{q}>");
        for c in &self.credentials {
            s += &format!(
                "{inner}<vsd:credential name={q}{}{q} kind={q}{}{q}/>",
                a(&c.name),
                c.kind.as_str()
            );
        }
        if self.machine_id {
            s += &format!("{inner}<vsd:machine-id/>");
        }
        if let Some(p) = self.notify {
            s += &format!("{inner}<vsd:notify port={q}{p}{q}/>");
        }
        if self.vsock {
            let added = if self.vsock_added { "yes" } else { "no" };
            match &self.vhost_user_vsock {
                Some(sock) => {
                    s += &format!(
                        "{inner}<vsd:vsock added={q}{added}{q} vhost-user={q}{}{q}/>",
                        a(sock)
                    )
                }
                None => s += &format!("{inner}<vsd:vsock added={q}{added}{q}/>"),
            }
        }
        if let Some(k) = &self.kernel_cmdline {
            let mode = match k.mode {
                CmdlineMode::Append => "append",
                CmdlineMode::Created => "created",
                CmdlineMode::Oem => "oem",
            };
            s += &format!(
                "{inner}<vsd:kernel-cmdline mode={q}{mode}{q}>{}</vsd:kernel-cmdline>",
                escape_text(&k.args)
            );
        }
        if let Some(was) = &self.smbios_was {
            s += &format!("{inner}<vsd:smbios was={q}{}{q}/>", a(was));
        }
        if !self.created.is_empty() {
            s += &format!(
                "{inner}<vsd:created>{}</vsd:created>",
                self.created.join(" ")
            );
        }
        if !self.expanded.is_empty() {
            s += &format!(
                "{inner}<vsd:expanded>{}</vsd:expanded>",
                self.expanded.join(" ")
            );
        }
        s += &format!("{nl}{indent}</vsd:{METADATA_ELEMENT}>");
        s
    }
}

/// Our element inside `<metadata>`, if present.
pub fn element<'a, 'i>(d: &'a DomainXml<'i>) -> Option<Node<'a, 'i>> {
    let md = d.top("metadata")?;
    md.children().find(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(METADATA_NS)
            && n.tag_name().name() == METADATA_ELEMENT
    })
}

fn ours<'a, 'i: 'a>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children()
        .filter(|c| c.is_element() && c.tag_name().namespace() == Some(METADATA_NS))
}

/// Read the record; `Ok(None)` when the domain has none.
pub fn read(d: &DomainXml) -> Result<Option<Record>> {
    let Some(el) = element(d) else {
        return Ok(None);
    };
    let bad = |msg: String| Error::NotDomain(format!("virt-systemd metadata: {msg}"));
    let mut r = Record::default();
    for n in ours(el) {
        let text = || n.text().unwrap_or("").trim().to_string();
        let tokens = || {
            n.text()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        match n.tag_name().name() {
            "credential" => {
                let name = n
                    .attribute("name")
                    .ok_or_else(|| bad("<credential> without name".into()))?;
                let kind = n.attribute("kind").unwrap_or("text");
                let kind = Kind::parse(kind)
                    .ok_or_else(|| bad(format!("credential {name}: unknown kind {kind:?}")))?;
                if r.credential(name).is_none() {
                    r.credentials.push(ManagedCredential {
                        name: name.to_string(),
                        kind,
                    });
                }
            }
            "machine-id" => r.machine_id = true,
            "notify" => {
                let p = n.attribute("port").unwrap_or("");
                r.notify = Some(
                    p.parse()
                        .map_err(|_| bad(format!("notify port {p:?} is not a number")))?,
                );
            }
            "vsock" => {
                r.vsock = true;
                r.vsock_added = n.attribute("added") == Some("yes");
                r.vhost_user_vsock = n.attribute("vhost-user").map(str::to_string);
            }
            "kernel-cmdline" => {
                let mode = match n.attribute("mode") {
                    Some("append") => CmdlineMode::Append,
                    Some("created") => CmdlineMode::Created,
                    Some("oem") => CmdlineMode::Oem,
                    m => return Err(bad(format!("kernel-cmdline mode {m:?}"))),
                };
                r.kernel_cmdline = Some(KernelCmdline { args: text(), mode });
            }
            "smbios" => r.smbios_was = n.attribute("was").map(str::to_string),
            "created" => r.created = tokens(),
            "expanded" => r.expanded = tokens(),
            _ => {} // newer versions may add items; keep reading
        }
    }
    Ok(Some(r))
}

/// Is `n` (a child of `<metadata>`) our element?
pub fn is_ours(n: Node) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(METADATA_NS)
}

/// `<metadata>` of the domain.
pub fn container<'a, 'i>(d: &'a DomainXml<'i>) -> Option<Node<'a, 'i>> {
    child(d.root(), "metadata")
}
