//! Removing what virt-systemd manages, guided by the domain's record: our OEM strings and
//! fw_cfg entries, our vsock, the cmdline tail, `<smbios>`, and containers we created once
//! they hold nothing else.

use super::layout::content_range;
use super::splice::Edit;
use crate::credential::{self, classify, Kind, Oem};
use crate::domain::{child, children, DomainXml};
use crate::metadata::{self, CmdlineMode, Record};
use crate::xmltext::{escape_text, removable_lead, start_tag_end};
use crate::xtree::{Node, NodeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything we added, including a `<uuid>` we inserted: the original bytes.
    Full,
    /// Keep an inserted `<uuid>`: the domain's identity must not change on re-render or
    /// on `disable` of a defined domain.
    KeepIdentity,
}

pub struct Stripped {
    pub edits: Vec<Edit>,
    pub notes: Vec<String>,
}

/// `<sysinfo type=…>` children of the root.
pub fn sysinfo<'a, 'i>(d: &'a DomainXml<'i>, ty: &str) -> Option<Node<'a, 'i>> {
    children(d.root(), "sysinfo").find(|n| n.attribute("type") == Some(ty))
}

/// `<entry>` elements of `<sysinfo type='smbios'><oemStrings>`.
pub fn oem_entries<'a, 'i: 'a>(d: &'a DomainXml<'i>) -> Vec<Node<'a, 'i>> {
    sysinfo(d, "smbios")
        .and_then(|s| child(s, "oemStrings"))
        .map(|o| children(o, "entry").collect())
        .unwrap_or_default()
}

/// Is this OEM string one we manage according to `r`?
pub fn owned_oem(r: &Record, s: &str) -> bool {
    match classify(s) {
        Oem::Credential { name, .. } => {
            r.credential(name).is_some_and(|c| c.kind != Kind::Fwcfg)
                || (name == credential::MACHINE_ID && r.machine_id)
                || (name == credential::NOTIFY_SOCKET && r.notify.is_some())
        }
        Oem::StubCmdline(_) | Oem::BootCmdline(_) => r
            .kernel_cmdline
            .as_ref()
            .is_some_and(|k| k.mode == CmdlineMode::Oem),
        _ => false,
    }
}

pub fn strip(d: &DomainXml, r: &Record, mode: Mode) -> Stripped {
    let text = d.text;
    let mut removed: Vec<NodeId> = Vec::new();
    let mut edits = Vec::new();
    let mut notes = Vec::new();

    for e in oem_entries(d) {
        if owned_oem(r, e.text().unwrap_or("")) {
            removed.push(e.id());
        }
    }
    if let Some(fw) = sysinfo(d, "fwcfg") {
        for e in children(fw, "entry") {
            let name = e
                .attribute("name")
                .and_then(|n| n.strip_prefix(credential::FWCFG_PREFIX));
            if name.is_some_and(|n| r.credential(n).is_some_and(|c| c.kind == Kind::Fwcfg)) {
                removed.push(e.id());
            }
        }
    }
    if let Some(md) = metadata::container(d) {
        removed.extend(
            md.children()
                .filter(|n| metadata::is_ours(*n))
                .map(|n| n.id()),
        );
    }
    let devices = d.top("devices");
    if r.vsock_added {
        if let Some(v) = devices.and_then(|dv| child(dv, "vsock")) {
            removed.push(v.id());
        }
    }
    removed.extend(super::vhost_user::owned(d, r).iter().map(|n| n.id()));
    let os = d.top("os");
    if let Some(sm) = os.and_then(|o| child(o, "smbios")) {
        if r.created("smbios") {
            removed.push(sm.id());
        } else if let (Some(was), Some(a)) =
            (&r.smbios_was, sm.attributes().find(|a| a.name() == "mode"))
        {
            // `was` is the attribute's raw text from before --force switched it.
            edits.push(Edit::replace(a.range_value(), was.clone()));
        }
    }
    if mode == Mode::Full && r.created("uuid") {
        if let Some(u) = d.top("uuid") {
            removed.push(u.id());
        }
    }
    if let (Some(k), Some(c)) = (&r.kernel_cmdline, os.and_then(|o| child(o, "cmdline"))) {
        let cr = content_range(text, c);
        let raw = &text[cr.clone()];
        let plain = c.text().unwrap_or("");
        match k.mode {
            CmdlineMode::Append => {
                let tail = escape_text(&format!(" {}", k.args));
                let cut = if raw.ends_with(&tail) {
                    Some(Edit::remove(cr.end - tail.len()..cr.end))
                } else if plain == k.args {
                    Some(Edit::remove(cr.clone()))
                } else {
                    plain
                        .strip_suffix(&format!(" {}", k.args))
                        .map(|rest| Edit::replace(cr.clone(), escape_text(rest)))
                };
                match cut {
                    Some(_) if r.expanded("cmdline") && plain == k.args => {
                        let ste = start_tag_end(text, c.range().start);
                        edits.push(Edit::replace(ste - 1..c.range().end, "/>"));
                    }
                    Some(e) => edits.push(e),
                    None => notes.push(
                        "kernel command line no longer ends with the arguments virt-systemd added; left as it is"
                            .into(),
                    ),
                }
            }
            CmdlineMode::Created => {
                if plain == k.args {
                    removed.push(c.id());
                } else {
                    notes.push(
                        "<cmdline> was changed since virt-systemd created it; left as it is".into(),
                    );
                }
            }
            CmdlineMode::Oem => {}
        }
    }

    // Containers, innermost first: removed when we created them and nothing else is left;
    // reopened self-closing elements are closed again.
    let smbios_si = sysinfo(d, "smbios");
    let containers: [(Option<Node>, bool, bool); 7] = [
        (
            smbios_si.and_then(|s| child(s, "oemStrings")),
            r.created("oemStrings") || r.created("sysinfo"),
            r.expanded("oemStrings"),
        ),
        (smbios_si, r.created("sysinfo"), r.expanded("sysinfo")),
        (sysinfo(d, "fwcfg"), r.created("fwcfg"), r.expanded("fwcfg")),
        (
            metadata::container(d),
            r.created("metadata"),
            r.expanded("metadata"),
        ),
        (devices, r.created("devices"), r.expanded("devices")),
        (os, false, r.expanded("os")),
        (None, false, false),
    ];
    let mut closed: Vec<NodeId> = Vec::new();
    for (node, created, expanded) in containers {
        let Some(n) = node else { continue };
        if !(created || expanded) || !emptied(n, &removed) {
            continue;
        }
        if created {
            removed.push(n.id());
        } else {
            let ste = start_tag_end(text, n.range().start);
            edits.push(Edit::replace(ste - 1..n.range().end, "/>"));
            closed.push(n.id());
        }
    }

    for id in &removed {
        let n = d.doc.get_node(*id).expect("node of this document");
        let inside = n
            .ancestors()
            .skip(1)
            .any(|a| removed.contains(&a.id()) || closed.contains(&a.id()));
        if !inside {
            let r = n.range();
            edits.push(Edit::remove(removable_lead(text, r.start)..r.end));
        }
    }
    Stripped { edits, notes }
}

/// Would `n` hold nothing but whitespace once `removed` are gone?
fn emptied(n: Node, removed: &[NodeId]) -> bool {
    n.children().all(|c| {
        if c.is_element() {
            removed.contains(&c.id())
        } else if c.is_text() {
            c.text().unwrap_or("").trim().is_empty()
        } else {
            false
        }
    })
}
