//! A vsock device for hosts (or users) without `/dev/vhost-vsock`: QEMU's
//! `vhost-user-vsock-pci` served by a user-space backend (vhost-device-vsock), which
//! libvirt cannot describe, so it goes in through `<qemu:commandline>`, with the shared
//! memory vhost-user needs (`<memoryBacking>` memfd, shared) and an explicit PCI slot (else
//! it collides with the slots libvirt assigns). Both elements are ours only when we created
//! them; a domain with its own `<qemu:commandline>` or an unsuitable `<memoryBacking>` is
//! refused with what to do instead, never merged into.

use super::layout::{append_children, insert_after, Style};
use super::splice::Edit;
use crate::domain::{child, DomainXml};
use crate::error::{Error, Result};
use crate::metadata::Record;
use crate::xmltext::escape_attr;
use crate::xtree::{Document, Keep, Node, Place};

pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// The chardev id in QEMU's command line, ours.
pub const CHARDEV_ID: &str = "vsdvsock";
const T_MEMORY_BACKING: &str = include_str!("../../xml-templates/memory-backing.xml");
const T_QEMU_COMMANDLINE: &str = include_str!("../../xml-templates/qemu-commandline.xml");

/// The domain's `<qemu:commandline>`, if any.
pub fn qemu_commandline<'a, 'i>(d: &'a DomainXml<'i>) -> Option<Node<'a, 'i>> {
    d.root().children().find(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(QEMU_NS)
            && n.tag_name().name() == "commandline"
    })
}

/// The socket our device in `<qemu:commandline>` connects to, if it is there.
pub fn rendered_socket(d: &DomainXml) -> Option<String> {
    let prefix = format!("socket,id={CHARDEV_ID},path=");
    qemu_commandline(d)?.children().find_map(|a| {
        a.attribute("value")?
            .strip_prefix(&prefix)
            .map(|p| p.replace(",,", ","))
    })
}

/// Is guest memory a shared memfd (what vhost-user needs)?
pub fn shared_memory(d: &DomainXml) -> bool {
    d.top("memoryBacking").is_some_and(|mb| {
        child(mb, "source").and_then(|s| s.attribute("type")) == Some("memfd")
            && child(mb, "access").and_then(|a| a.attribute("mode")) == Some("shared")
    })
}

/// QEMU's option syntax doubles commas inside a value.
fn qemu_value(s: &str) -> String {
    s.replace(',', ",,")
}

/// What [`taken_slots`] reads: devices and their `<address>`. The domain's own tree keeps
/// less (large domains have thousands of devices), so this reads the text again, only when
/// the device is rendered.
fn addresses(p: &Place) -> Keep {
    match (p.depth, p.parent, p.name) {
        (1, ..) => Keep::Select,
        (2, _, "devices") => Keep::Select,
        (3, "devices", _) => Keep::Select,
        (4, _, "address") => Keep::All,
        _ => Keep::Nothing,
    }
}

/// PCI slots taken on bus 0 by the devices libvirt addressed.
fn taken_slots(d: &DomainXml) -> Vec<u32> {
    let num = |v: Option<&str>| {
        v.and_then(|v| match v.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        })
    };
    // The text parsed already: this cannot fail.
    let Ok(doc) = Document::parse_with(d.text, &addresses) else {
        return vec![];
    };
    let Some(dev) = child(doc.root_element(), "devices") else {
        return vec![];
    };
    dev.children()
        .filter(|n| n.is_element())
        .filter_map(|n| child(n, "address"))
        .filter(|a| {
            a.attribute("type") == Some("pci")
                && num(a.attribute("domain")).unwrap_or(0) == 0
                && num(a.attribute("bus")).unwrap_or(0) == 0
        })
        .filter_map(|a| num(a.attribute("slot")))
        .collect()
}

/// The root bus and a free slot for the device: slots 0x10–0x1e (q35 keeps 0x1f for
/// its LPC/SATA/SMBus functions; libvirt fills slots from 0x01 up).
pub fn placement(d: &DomainXml) -> Result<(&'static str, u32)> {
    let machine = d
        .top("os")
        .and_then(|o| child(o, "type"))
        .and_then(|t| t.attribute("machine"))
        .unwrap_or("");
    let bus = if machine.contains("q35") {
        "pcie.0"
    } else {
        "pci.0"
    };
    let taken = taken_slots(d);
    let slot = (0x10..=0x1e).find(|s| !taken.contains(s)).ok_or_else(|| {
        Error::invalid(
            "no free PCI slot (0x10-0x1e) on the root bus for the vhost-user vsock device",
        )
    })?;
    Ok((bus, slot))
}

/// QEMU's `-chardev` and `-device` values for a backend at `socket`.
pub fn qemu_args(socket: &str, bus: &str, slot: u32) -> (String, String) {
    (
        format!("socket,id={CHARDEV_ID},path={}", qemu_value(socket)),
        format!("vhost-user-vsock-pci,chardev={CHARDEV_ID},bus={bus},addr={slot:#04x}"),
    )
}

/// Render the device for a backend at `socket` onto `d` (already stripped of ours).
pub fn render(
    d: &DomainXml,
    st: &Style,
    socket: &str,
    edits: &mut Vec<Edit>,
    rec: &mut Record,
) -> Result<()> {
    let text = d.text;
    let root = d.root();
    if d.top("devices").and_then(|dv| child(dv, "vsock")).is_some() {
        return Err(Error::invalid(
            "the domain has a <vsock> device of its own; a vhost-user vsock would be a second \
             one (remove that device, or enable without the user-space backend)",
        ));
    }
    if qemu_commandline(d).is_some() {
        return Err(Error::invalid(
            "the domain has a <qemu:commandline> of its own; virt-systemd adds the vhost-user \
             vsock device only in one it owns (move those arguments elsewhere, or add the \
             device by hand and pass --no-vsock)",
        ));
    }
    match d.top("memoryBacking") {
        Some(_) => {
            if !shared_memory(d) {
                return Err(Error::invalid(
                    "the domain's <memoryBacking> lacks <source type='memfd'/> and <access \
                     mode='shared'/>, which a vhost-user vsock device needs: add them, then \
                     run again",
                ));
            }
        }
        None => {
            let anchor = d.top("currentMemory").or_else(|| d.top("memory"));
            let ind = st.child_indent(text, root);
            let el = st.template(T_MEMORY_BACKING, &ind, &[]);
            match anchor {
                Some(a) => edits.push(insert_after(text, st, a, &el)),
                None => {
                    let (e, _) = append_children(text, st, root, &ind, &[el]);
                    edits.extend(e);
                }
            }
            rec.created.push("memoryBacking".into());
        }
    }
    let (bus, slot) = placement(d)?;
    let (chardev, device) = qemu_args(socket, bus, slot);
    let ind = st.child_indent(text, root);
    let el = st.template(
        T_QEMU_COMMANDLINE,
        &ind,
        &[
            ("chardev", &escape_attr(&chardev, st.q)),
            ("device", &escape_attr(&device, st.q)),
        ],
    );
    let (e, _) = append_children(text, st, root, &ind, &[el]);
    edits.extend(e);
    rec.created.push("qemu:commandline".into());
    rec.vhost_user_vsock = Some(socket.to_string());
    Ok(())
}

/// What strip removes: our `<qemu:commandline>` (when it still carries our chardev) and
/// the `<memoryBacking>` we created (when it is still only what we wrote).
pub fn owned<'a, 'i>(d: &'a DomainXml<'i>, r: &Record) -> Vec<Node<'a, 'i>> {
    let mut out = Vec::new();
    if r.created("qemu:commandline") && rendered_socket(d).is_some() {
        out.extend(qemu_commandline(d));
    }
    if r.created("memoryBacking") && shared_memory(d) {
        if let Some(mb) = d.top("memoryBacking") {
            if mb.children().filter(|n| n.is_element()).count() == 2 {
                out.push(mb);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::RewriteDefaults;
    use crate::intent::Request;
    use crate::render::{rewrite, strip, strip::Mode};

    const SOCK: &str = "/run/user/1000/virt-systemd/vsock/vm/vhost.sock";

    fn req() -> Request {
        Request {
            vsock: Some(true),
            vhost_user_vsock: Some(SOCK.into()),
            ..Request::default()
        }
    }

    fn run(xml: &str) -> crate::error::Result<String> {
        rewrite(xml, &RewriteDefaults::default(), &req(), &|| {
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()
        })
        .map(|o| o.text)
    }

    #[test]
    fn picks_the_bus_of_the_machine_and_a_free_slot() {
        let pc = "<domain type='qemu'><name>v</name><memory>1</memory><os><type machine='pc-i440fx-9.0'>hvm</type></os>\
                  <devices><disk><address type='pci' domain='0x0000' bus='0x00' slot='0x10' function='0x0'/></disk>\
                  <interface><address type='pci' domain='0x0000' bus='0x01' slot='0x11' function='0x0'/></interface>\
                  <controller><address type='pci' bus='0' slot='17'/></controller></devices></domain>";
        let out = run(pc).unwrap();
        // 0x10 and 0x11 (decimal 17) are taken on bus 0; 0x11 on bus 1 does not count.
        assert!(
            out.contains("vhost-user-vsock-pci,chardev=vsdvsock,bus=pci.0,addr=0x12"),
            "{out}"
        );
        assert_eq!(strip(&out, Mode::Full).unwrap().text, pc);
    }

    #[test]
    fn refuses_what_it_would_have_to_merge_into() {
        let own_cmdline = "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\
                           <name>v</name><os><type>hvm</type></os><qemu:commandline><qemu:arg value='-S'/></qemu:commandline></domain>";
        let e = run(own_cmdline).unwrap_err().to_string();
        assert!(e.contains("<qemu:commandline> of its own"), "{e}");
        let hugepages = "<domain type='qemu'><name>v</name><os><type>hvm</type></os><memoryBacking><hugepages/></memoryBacking></domain>";
        let e = run(hugepages).unwrap_err().to_string();
        assert!(e.contains("memoryBacking"), "{e}");
        let vsock = "<domain type='qemu'><name>v</name><os><type>hvm</type></os><devices><vsock model='virtio'/></devices></domain>";
        let e = run(vsock).unwrap_err().to_string();
        assert!(e.contains("<vsock> device of its own"), "{e}");
        // A suitable memoryBacking of the domain's own is used, and left alone by strip.
        let shared = "<domain type='qemu'><name>v</name><os><type>hvm</type></os><memoryBacking><source type='memfd'/>\
                      <access mode='shared'/></memoryBacking></domain>";
        let out = run(shared).unwrap();
        assert_eq!(out.matches("<memoryBacking>").count(), 1, "{out}");
        assert_eq!(strip(&out, Mode::Full).unwrap().text, shared);
    }

    #[test]
    fn edited_parts_are_left_to_their_owner() {
        let xml = "<domain type='qemu'><name>v</name><memory>1</memory><os><type machine='q35'>hvm</type></os></domain>";
        let out = run(xml).unwrap();
        // Someone added hugepages to our memoryBacking: strip keeps it.
        let edited = out.replace(
            "<access mode='shared'/>",
            "<access mode='shared'/><hugepages/>",
        );
        let back = strip(&edited, Mode::Full).unwrap().text;
        assert!(
            back.contains("<hugepages/>") && !back.contains("vsdvsock"),
            "{back}"
        );
    }

    #[test]
    fn relative_socket_is_refused() {
        let r = Request {
            vsock: Some(true),
            vhost_user_vsock: Some("vhost.sock".into()),
            ..Request::default()
        };
        let e = rewrite(
            "<domain><name>v</name></domain>",
            &RewriteDefaults::default(),
            &r,
            &|| String::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("absolute path"), "{e}");
    }
}
