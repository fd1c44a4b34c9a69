//! Intent + domain → edits on the original text.
//!
//! `rewrite` = strip what we manage, then render the intent onto the clean document. So
//! rewriting twice equals rewriting once exactly when stripping undoes rendering, which is
//! the property the tests check byte for byte.

pub mod layout;
pub mod splice;
pub mod strip;
pub mod vhost_user;

use crate::config::RewriteDefaults;
use crate::credential::{self, classify, Credential, Kind, Oem, Value};
use crate::domain::{child, children, DomainXml};
use crate::error::{Error, Result};
use crate::intent::{self, Intent, Request};
use crate::metadata::{self, CmdlineMode, KernelCmdline, ManagedCredential, Record};
use crate::xmltext::{escape_attr, escape_text, removable_lead};
use layout::{
    append_children, append_children_skipping, content_range, insert_after, insert_before, Style,
};
use splice::Edit;
use std::borrow::Cow;
use strip::{oem_entries, sysinfo};

const T_VSOCK: &str = include_str!("../../xml-templates/vsock.xml");
const T_SMBIOS: &str = include_str!("../../xml-templates/smbios.xml");
const T_ENTRY: &str = include_str!("../../xml-templates/oem-entry.xml");
const T_FWCFG_ENTRY: &str = include_str!("../../xml-templates/fwcfg-entry.xml");
const T_SYSINFO_SMBIOS: &str = include_str!("../../xml-templates/sysinfo-smbios.xml");
const T_SYSINFO_FWCFG: &str = include_str!("../../xml-templates/sysinfo-fwcfg.xml");
const T_UUID: &str = include_str!("../../xml-templates/uuid.xml");
const T_CMDLINE: &str = include_str!("../../xml-templates/cmdline.xml");

/// Result of a rewrite: the new text and notes for the user (never containing values).
#[derive(Debug)]
pub struct Outcome {
    pub text: String,
    pub notes: Vec<String>,
}

/// What survives a re-render from the previous record.
#[derive(Debug, Default, Clone)]
struct Carry {
    uuid_created: bool,
    smbios_was: Option<String>,
}

/// Remove everything virt-systemd manages.
pub fn strip(input: &str, mode: strip::Mode) -> Result<Outcome> {
    strip_spliced(input, mode).map(Spliced::into_outcome)
}

/// Resolve the intent for `input` and render it. `new_uuid` supplies a UUID when the
/// domain needs one and has none.
pub fn rewrite(
    input: &str,
    defaults: &RewriteDefaults,
    req: &Request,
    new_uuid: &dyn Fn() -> String,
) -> Result<Outcome> {
    rewrite_spliced(input, defaults, req, new_uuid).map(Spliced::into_outcome)
}

/// A result before it is written out: `base` (the input, or the input with our old
/// entries stripped) with `edits` applied.
pub struct Spliced<'a> {
    base: Cow<'a, str>,
    edits: Vec<Edit>,
    pub notes: Vec<String>,
}

impl Spliced<'_> {
    fn new(base: Cow<'_, str>, mut edits: Vec<Edit>, notes: Vec<String>) -> Spliced<'_> {
        splice::sort(&mut edits);
        Spliced { base, edits, notes }
    }

    /// Write the result without building it in memory first.
    pub fn write_to(&self, w: &mut (impl std::io::Write + ?Sized)) -> std::io::Result<()> {
        splice::pieces(&self.base, &self.edits, |p| w.write_all(p.as_bytes()))
    }

    /// Is the result byte for byte `input`?
    pub fn unchanged(&self, input: &str) -> bool {
        let mut at = 0;
        let same = splice::pieces(&self.base, &self.edits, |p| {
            let ok = input.as_bytes().get(at..at + p.len()) == Some(p.as_bytes());
            at += p.len();
            if ok {
                Ok(())
            } else {
                Err(())
            }
        });
        same.is_ok() && at == input.len()
    }

    pub fn into_outcome(self) -> Outcome {
        Outcome {
            text: splice::apply(&self.base, self.edits),
            notes: self.notes,
        }
    }
}

/// [`strip`], unwritten.
pub fn strip_spliced(input: &str, mode: strip::Mode) -> Result<Spliced<'_>> {
    let d = DomainXml::parse(input)?;
    let Some(r) = metadata::read(&d)? else {
        return Ok(Spliced::new(
            Cow::Borrowed(input),
            Vec::new(),
            vec!["domain has no virt-systemd metadata; nothing to remove".into()],
        ));
    };
    let s = strip::strip(&d, &r, mode);
    Ok(Spliced::new(Cow::Borrowed(input), s.edits, s.notes))
}

/// [`rewrite`], unwritten.
pub fn rewrite_spliced<'a>(
    input: &'a str,
    defaults: &RewriteDefaults,
    req: &Request,
    new_uuid: &dyn Fn() -> String,
) -> Result<Spliced<'a>> {
    let d = DomainXml::parse(input)?;
    let record = metadata::read(&d)?;
    let it = intent::resolve(defaults, record.as_ref(), &|mc| current_value(&d, mc), req)?;
    let Some(r) = &record else {
        // Nothing of ours to strip: render onto the document already parsed.
        let (edits, notes) = render(&d, &it, &Carry::default(), req.force, new_uuid)?;
        return Ok(Spliced::new(Cow::Borrowed(input), edits, notes));
    };
    let s = strip::strip(&d, r, strip::Mode::KeepIdentity);
    let carry = Carry {
        uuid_created: r.created("uuid"),
        smbios_was: r.smbios_was.clone(),
    };
    let mut notes = s.notes;
    let clean = splice::apply(input, s.edits);
    drop(d); // one document at a time: large domains are several MiB parsed
    let d2 = DomainXml::parse(&clean)?;
    let (edits, more) = render(&d2, &it, &carry, req.force, new_uuid)?;
    drop(d2);
    notes.extend(more);
    Ok(Spliced::new(Cow::Owned(clean), edits, notes))
}

/// The value a managed credential has in the document now.
pub fn current_value(d: &DomainXml, mc: &ManagedCredential) -> Option<Value> {
    if mc.kind == Kind::Fwcfg {
        let fw = sysinfo(d, "fwcfg")?;
        let want = format!("{}{}", credential::FWCFG_PREFIX, mc.name);
        return children(fw, "entry")
            .find(|e| e.attribute("name") == Some(want.as_str()))
            .and_then(|e| e.attribute("file"))
            .map(|f| Value::File(f.to_string()));
    }
    oem_entries(d)
        .into_iter()
        .find_map(|e| match classify(e.text()?) {
            Oem::Credential {
                name,
                binary,
                value,
            } if name == mc.name => credential::decode_value(binary, value),
            _ => None,
        })
}

fn render(
    d: &DomainXml,
    it: &Intent,
    carry: &Carry,
    force: bool,
    new_uuid: &dyn Fn() -> String,
) -> Result<(Vec<Edit>, Vec<String>)> {
    let text = d.text;
    let root = d.root();
    let st = Style::detect(text, root);
    let q = st.q;
    let mut edits = Vec::new();
    let mut notes = Vec::new();
    let mut rec = Record {
        machine_id: it.machine_id,
        notify: it.notify,
        vsock: it.vsock,
        ..Record::default()
    };
    let facts = d.facts();
    let name_el = d
        .top("name")
        .ok_or_else(|| Error::NotDomain("domain has no <name> element".into()))?;

    // Identity first: the machine-id credential needs the UUID.
    let mut uuid = facts.uuid.clone();
    if carry.uuid_created && uuid.is_some() {
        rec.created.push("uuid".into());
    }
    if it.machine_id && uuid.is_none() {
        let u = new_uuid();
        edits.push(insert_after(
            text,
            &st,
            name_el,
            &st.template(T_UUID, "", &[("uuid", &u)]),
        ));
        notes.push(format!(
            "domain had no <uuid>; inserted {u} so host and guest agree on the machine ID"
        ));
        rec.created.push("uuid".into());
        uuid = Some(u);
    }

    // Our metadata goes right after the identity elements, before anything else we insert
    // at the same spot (one-line documents put <name> and <os> side by side).
    let meta_slot = edits.len();

    // OEM strings we want, with the credential name each one carries (for conflicts).
    let mut oem: Vec<(Option<String>, String)> = Vec::new();
    let mut fwcfg: Vec<&Credential> = Vec::new();
    for c in &it.credentials {
        match c.oem_string() {
            Some(s) => oem.push((Some(c.name.clone()), s)),
            None => fwcfg.push(c),
        }
    }
    if it.machine_id {
        let u = uuid.as_deref().unwrap_or_default();
        let id = uuid::Uuid::parse_str(u)
            .map_err(|_| Error::invalid(format!("domain <uuid> {u:?} is not a valid UUID")))?;
        oem.push((
            Some(credential::MACHINE_ID.into()),
            format!(
                "{}{}={}",
                credential::TEXT_PREFIX,
                credential::MACHINE_ID,
                id.simple()
            ),
        ));
    }
    if let Some(port) = it.notify {
        oem.push((
            Some(credential::NOTIFY_SOCKET.into()),
            format!(
                "{}{}=vsock-stream:2:{port}",
                credential::TEXT_PREFIX,
                credential::NOTIFY_SOCKET
            ),
        ));
    }
    let cmdline_mode = it.kernel_cmdline.as_ref().map(|_| {
        if facts.direct_kernel {
            if d.top("os").and_then(|o| child(o, "cmdline")).is_some() {
                CmdlineMode::Append
            } else {
                CmdlineMode::Created
            }
        } else {
            CmdlineMode::Oem
        }
    });
    if let (Some(args), Some(CmdlineMode::Oem)) = (&it.kernel_cmdline, cmdline_mode) {
        oem.push((None, format!("{}{args}", credential::STUB_CMDLINE_PREFIX)));
        oem.push((None, format!("{}{args}", credential::BOOT_CMDLINE_PREFIX)));
    }

    // The cmdline first: a created <cmdline> belongs right after <initrd>, before an
    // <smbios> appended at the same spot.
    if let (Some(args), Some(mode)) = (&it.kernel_cmdline, cmdline_mode) {
        let os = d
            .top("os")
            .ok_or_else(|| Error::NotDomain("domain has no <os> element".into()))?;
        match mode {
            CmdlineMode::Append => {
                let c = child(os, "cmdline").expect("checked above");
                // Appending is exact only to plain text (libvirt reads the text anyway); an
                // element or comment inside would hide where our arguments end.
                if c.children().any(|n| !n.is_text()) {
                    return Err(Error::Conflict(
                        "<os><cmdline> holds markup, not only text; virt-systemd appends only to a plain-text command line"
                            .into(),
                    ));
                }
                let cr = content_range(text, c);
                if cr.end == c.range().end {
                    // <cmdline/>: open it.
                    edits.push(Edit::replace(
                        cr.end - 2..cr.end,
                        format!(">{}</cmdline>", escape_text(args)),
                    ));
                    rec.expanded.push("cmdline".into());
                } else if c.text().unwrap_or("").is_empty() {
                    edits.push(Edit::insert(cr.end, escape_text(args)));
                } else {
                    edits.push(Edit::insert(cr.end, escape_text(&format!(" {args}"))));
                }
            }
            CmdlineMode::Created => {
                let after = child(os, "initrd")
                    .or_else(|| child(os, "kernel"))
                    .expect("direct kernel boot");
                let el = st.template(T_CMDLINE, "", &[("args", &escape_text(args))]);
                edits.push(insert_after(text, &st, after, &el));
            }
            CmdlineMode::Oem => {}
        }
        rec.kernel_cmdline = Some(KernelCmdline {
            args: args.clone(),
            mode,
        });
    }

    // Existing entries: conflicts with what we are asked to manage, and a report of
    // other io.systemd. strings we leave alone.
    let entries = oem_entries(d);
    let mut kept = entries.len();
    let mut forced: Vec<crate::xtree::NodeId> = Vec::new();
    for e in &entries {
        let s = e.text().unwrap_or("");
        let (clash, label) = match classify(s) {
            Oem::Credential { name, .. } => (
                oem.iter().any(|(n, _)| n.as_deref() == Some(name)),
                format!("credential {name}"),
            ),
            Oem::StubCmdline(_) | Oem::BootCmdline(_) => (
                cmdline_mode == Some(CmdlineMode::Oem),
                s.split('=').next().unwrap_or("").to_string(),
            ),
            Oem::OtherSystemd => (false, s.split('=').next().unwrap_or("").to_string()),
            Oem::Foreign => continue,
        };
        if !clash {
            notes.push(format!(
                "keeping OEM string for {label}: not managed by virt-systemd"
            ));
        } else if force {
            notes.push(format!(
                "replacing hand-written OEM string for {label} (--force)"
            ));
            edits.push(Edit::remove(
                removable_lead(text, e.range().start)..e.range().end,
            ));
            forced.push(e.id());
            kept -= 1;
        } else {
            return Err(Error::Conflict(format!(
                "the domain already has a hand-written OEM string for {label}; \
                 use --force to replace it"
            )));
        }
    }
    if kept + oem.len() > credential::OEM_STRINGS_MAX {
        return Err(Error::invalid(format!(
            "{} OEM strings in all, SMBIOS type 11 holds at most {}",
            kept + oem.len(),
            credential::OEM_STRINGS_MAX
        )));
    }

    let os = d.top("os");
    if !oem.is_empty() {
        let os = os.ok_or_else(|| Error::NotDomain("domain has no <os> element".into()))?;
        match child(os, "smbios") {
            None => {
                let ind = st.child_indent(text, os);
                let (e, opened) =
                    append_children(text, &st, os, &ind, &[st.template(T_SMBIOS, &ind, &[])]);
                edits.extend(e);
                rec.created.push("smbios".into());
                if opened {
                    rec.expanded.push("os".into());
                }
            }
            Some(sm) => {
                let mode = sm.attribute("mode").unwrap_or("");
                if mode != "sysinfo" {
                    if !(force || carry.smbios_was.is_some()) {
                        return Err(Error::Conflict(format!(
                            "<os><smbios mode={q}{mode}{q}/> keeps libvirt from passing OEM strings; \
                             use --force to switch it to mode={q}sysinfo{q}"
                        )));
                    }
                    let a = sm
                        .attributes()
                        .find(|a| a.name() == "mode")
                        .ok_or_else(|| Error::NotDomain("<smbios> has no mode".into()))?;
                    edits.push(Edit::replace(a.range_value(), "sysinfo"));
                    // The value as written (escapes and all), so strip restores the bytes.
                    let raw = text[a.range_value()].to_string();
                    rec.smbios_was = Some(carry.smbios_was.clone().unwrap_or(raw));
                }
            }
        }
        let si = sysinfo(d, "smbios");
        match si {
            Some(si) => match child(si, "oemStrings") {
                Some(o) => {
                    let ind = st.child_indent_skipping(text, o, &forced);
                    let kids = entries_xml(&st, &ind, &oem);
                    let (e, opened) = append_children_skipping(text, &st, o, &ind, &kids, &forced);
                    edits.extend(e);
                    if opened {
                        rec.expanded.push("oemStrings".into());
                    }
                }
                None => {
                    let ind = st.child_indent(text, si);
                    let kids = entries_xml(&st, &format!("{ind}{}", st.unit), &oem);
                    let o = st.wrap(&ind, "<oemStrings>", &kids, "</oemStrings>");
                    let (e, opened) = append_children(text, &st, si, &ind, &[o]);
                    edits.extend(e);
                    rec.created.push("oemStrings".into());
                    if opened {
                        rec.expanded.push("sysinfo".into());
                    }
                }
            },
            None => {
                let ind = st.child_indent(text, root);
                let kids = entries_xml(&st, &format!("{ind}{}{}", st.unit, st.unit), &oem);
                let inner = format!("{ind}{}", st.unit);
                let o = st.wrap(&inner, "<oemStrings>", &kids, "</oemStrings>");
                let el = st.wrap(
                    &ind,
                    &st.template(T_SYSINFO_SMBIOS, &ind, &[]),
                    &[o],
                    "</sysinfo>",
                );
                edits.push(insert_before(text, &st, os, &el));
                rec.created.push("sysinfo".into());
            }
        }
    }

    if !fwcfg.is_empty() {
        let fw = sysinfo(d, "fwcfg");
        let existing: Vec<_> = fw
            .map(|f| children(f, "entry").collect())
            .unwrap_or_default();
        for c in &fwcfg {
            let name = format!("{}{}", credential::FWCFG_PREFIX, c.name);
            if let Some(e) = existing.iter().find(|e| e.attribute("name") == Some(&name)) {
                if !force {
                    return Err(Error::Conflict(format!(
                        "the domain already has a hand-written fw_cfg entry {name}; use --force to replace it"
                    )));
                }
                notes.push(format!(
                    "replacing hand-written fw_cfg entry {name} (--force)"
                ));
                edits.push(Edit::remove(
                    removable_lead(text, e.range().start)..e.range().end,
                ));
                forced.push(e.id());
            }
        }
        let entry = |c: &Credential, ind: &str| {
            let Value::File(f) = &c.value else {
                unreachable!("fw_cfg credentials carry a file")
            };
            st.template(
                T_FWCFG_ENTRY,
                ind,
                &[
                    (
                        "name",
                        &escape_attr(&format!("{}{}", credential::FWCFG_PREFIX, c.name), q),
                    ),
                    ("file", &escape_attr(f, q)),
                ],
            )
        };
        match fw {
            Some(fw) => {
                let ind = st.child_indent_skipping(text, fw, &forced);
                let kids: Vec<_> = fwcfg.iter().map(|c| entry(c, &ind)).collect();
                let (e, opened) = append_children_skipping(text, &st, fw, &ind, &kids, &forced);
                edits.extend(e);
                if opened {
                    rec.expanded.push("fwcfg".into());
                }
            }
            None => {
                let ind = st.child_indent(text, root);
                let inner = format!("{ind}{}", st.unit);
                let kids: Vec<_> = fwcfg.iter().map(|c| entry(c, &inner)).collect();
                let el = st.wrap(
                    &ind,
                    &st.template(T_SYSINFO_FWCFG, &ind, &[]),
                    &kids,
                    "</sysinfo>",
                );
                // After the smbios sysinfo, else before <os> (after ours, if we add one).
                match (sysinfo(d, "smbios"), os) {
                    (Some(si), _) => edits.push(insert_after(text, &st, si, &el)),
                    (None, Some(os)) => edits.push(insert_before(text, &st, os, &el)),
                    (None, None) => {
                        let (e, _) = append_children(text, &st, root, &ind, &[el]);
                        edits.extend(e);
                    }
                }
                rec.created.push("fwcfg".into());
            }
        }
    }

    if let (true, Some(sock)) = (it.vsock, &it.vhost_user_vsock) {
        vhost_user::render(d, &st, sock, &mut edits, &mut rec)?;
    } else if it.vsock {
        match d.top("devices") {
            Some(dev) if child(dev, "vsock").is_some() => {}
            Some(dev) => {
                let ind = st.child_indent(text, dev);
                let (e, opened) =
                    append_children(text, &st, dev, &ind, &[st.template(T_VSOCK, &ind, &[])]);
                edits.extend(e);
                rec.vsock_added = true;
                if opened {
                    rec.expanded.push("devices".into());
                }
            }
            None => {
                let ind = st.child_indent(text, root);
                let inner = format!("{ind}{}", st.unit);
                let el = st.wrap(
                    &ind,
                    "<devices>",
                    &[st.template(T_VSOCK, &inner, &[])],
                    "</devices>",
                );
                let (e, _) = append_children(text, &st, root, &ind, &[el]);
                edits.extend(e);
                rec.vsock_added = true;
                rec.created.push("devices".into());
            }
        }
    }
    if it.notify.is_some() && !it.vsock && facts.vsock.is_none() {
        notes.push(
            "readiness notification is on, but the domain has no vsock device (--no-vsock)".into(),
        );
    }

    rec.credentials = it
        .credentials
        .iter()
        .map(|c| ManagedCredential {
            name: c.name.clone(),
            kind: c.kind(),
        })
        .chain(it.missing.iter().cloned())
        .collect();
    for n in &it.replaced_by_derived {
        notes.push(format!(
            "credential {n} is now set by {}",
            if n == credential::MACHINE_ID {
                "--machine-id"
            } else {
                "--notify"
            }
        ));
    }
    for m in &it.missing {
        notes.push(format!(
            "credential {} is recorded as managed but its entry is missing; pass it again to restore it",
            m.name
        ));
    }

    match metadata::container(d) {
        Some(md) => {
            let ind = st.child_indent(text, md);
            let self_closing = content_range(text, md).end == md.range().end;
            if self_closing {
                rec.expanded.push("metadata".into());
            }
            let el = rec.to_xml(q, st.nl, &ind, &st.unit);
            let (e, _) = append_children(text, &st, md, &ind, &[el]);
            edits.splice(meta_slot..meta_slot, e);
        }
        None => {
            rec.created.push("metadata".into());
            let ind = st.child_indent(text, root);
            let inner = format!("{ind}{}", st.unit);
            let el = st.wrap(
                &ind,
                "<metadata>",
                &[rec.to_xml(q, st.nl, &inner, &st.unit)],
                "</metadata>",
            );
            let anchor = root
                .children()
                .rfind(|n| {
                    n.is_element()
                        && n.tag_name().namespace().is_none()
                        && matches!(
                            n.tag_name().name(),
                            "name" | "uuid" | "genid" | "title" | "description"
                        )
                })
                .unwrap_or(name_el);
            edits.insert(meta_slot, insert_after(text, &st, anchor, &el));
        }
    }
    Ok((edits, notes))
}

fn entries_xml(st: &Style, ind: &str, oem: &[(Option<String>, String)]) -> Vec<String> {
    oem.iter()
        .map(|(_, s)| st.template(T_ENTRY, ind, &[("value", &escape_text(s))]))
        .collect()
}
