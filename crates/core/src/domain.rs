//! Reading a libvirt domain XML: strict parsing with positions, and the facts other
//! modules need (name, UUID, boot mode, vsock, interfaces, OEM strings).

use crate::error::{Error, Result};
use crate::xmltext::line_col;
use crate::xtree::{Document, ErrorKind, Keep, Node, Place, XmlError};
use std::cell::Cell;

/// A parsed domain document. Node ranges index into `text`, so edits can be spliced
/// into the original bytes.
pub struct DomainXml<'a> {
    pub text: &'a str,
    pub doc: Document<'a>,
}

/// Decode input bytes as UTF-8, reporting the first bad byte's position.
pub fn decode(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.valid_up_to());
        Error::Parse {
            input: String::new(),
            line,
            column,
            msg: "input is not valid UTF-8".into(),
        }
    })
}

impl<'a> DomainXml<'a> {
    /// Parse and check all of `text`, keeping in the tree only the parts virt-systemd reads
    /// (see [`keep`]): on a large domain the tree is most of the time and memory.
    pub fn parse(text: &'a str) -> Result<Self> {
        let full = FULL_TREES.with(Cell::get);
        let doc = if full {
            Document::parse(text)
        } else {
            Document::parse_with(text, &keep)
        }
        .map_err(|e| parse_error(text, &e))?;
        let root = doc.root_element();
        if root.tag_name().name() != "domain" || root.tag_name().namespace().is_some() {
            let (line, column) = line_col(text.as_bytes(), root.range().start);
            return Err(Error::NotDomain(format!(
                "line {line}, column {column}: root element is <{}>, not a libvirt <domain>",
                root.tag_name().name()
            )));
        }
        let d = DomainXml { text, doc };
        d.check_singletons()?;
        Ok(d)
    }

    /// Elements libvirt has once, and we edit, must be there once: with two `<os>` (or two
    /// records of ours) a rewrite would read one and edit the other. And `<name>`, `<uuid>`
    /// must be plain text.
    fn check_singletons(&self) -> Result<()> {
        let root = self.root();
        fn second<'n, 'i>(parent: Node<'n, 'i>, name: &str) -> Option<Node<'n, 'i>> {
            parent.children().filter(|c| is_named(c, name)).nth(1)
        }
        let mut found = ["name", "uuid", "os", "devices", "metadata"]
            .iter()
            .find_map(|n| second(root, n).map(|e| (e, format!("<{n}>"))));
        if let Some(os) = self.top("os") {
            found = found.or_else(|| {
                ["kernel", "initrd", "cmdline", "smbios"]
                    .iter()
                    .find_map(|n| second(os, n).map(|e| (e, format!("<os><{n}>"))))
            });
        }
        if let Some(dev) = self.top("devices") {
            found = found.or_else(|| second(dev, "vsock").map(|e| (e, "<vsock>".into())));
        }
        for ty in ["smbios", "fwcfg"] {
            let mut of_type = children(root, "sysinfo").filter(|s| s.attribute("type") == Some(ty));
            let first = of_type.next();
            found = found
                .or_else(|| {
                    of_type
                        .next()
                        .map(|e| (e, format!("<sysinfo type='{ty}'>")))
                })
                .or_else(|| {
                    first.and_then(|s| second(s, "oemStrings").map(|e| (e, "<oemStrings>".into())))
                });
        }
        let mut stray = None;
        if let Some(m) = self.top("metadata") {
            let mut ours = m
                .children()
                .filter(|c| c.is_element() && c.tag_name().namespace() == Some(crate::METADATA_NS));
            // Our namespace holds our record and nothing else.
            stray = m.children().find(|c| {
                c.is_element()
                    && c.tag_name().namespace() == Some(crate::METADATA_NS)
                    && c.tag_name().name() != crate::METADATA_ELEMENT
            });
            if stray.is_none() {
                found = found.or_else(|| ours.nth(1).map(|e| (e, "virt-systemd record".into())));
            }
        }
        let found =
            found.map(|(e, what)| (e, format!("a second {what}; a libvirt domain has one")));
        let found = found.or_else(|| {
            stray.map(|e| {
                let what = format!(
                    "<{}> in virt-systemd's namespace {} is not virt-systemd's",
                    e.tag_name().name(),
                    crate::METADATA_NS
                );
                (e, what)
            })
        });
        // <name> and <uuid> are read as text: markup inside would make them look absent.
        let found = found.or_else(|| {
            ["name", "uuid"].iter().find_map(|n| {
                child(root, n)
                    .and_then(|e| e.children().find(|c| !c.is_text()))
                    .map(|c| (c, format!("<{n}> holds markup; libvirt expects only text")))
            })
        });
        // An empty <uuid> is no UUID to libvirt (it refuses it), and would look absent.
        let found = found.or_else(|| {
            child(root, "uuid")
                .filter(|u| u.text().map_or(true, |t| t.trim().is_empty()))
                .map(|u| (u, "<uuid> is empty; libvirt needs a UUID there".to_string()))
        });
        match found {
            None => Ok(()),
            Some((e, what)) => {
                let (line, column) = line_col(self.text.as_bytes(), e.range().start);
                Err(Error::NotDomain(format!(
                    "line {line}, column {column}: {what}"
                )))
            }
        }
    }

    pub fn root(&self) -> Node<'_, 'a> {
        self.doc.root_element()
    }

    /// First child element of the root with this (namespace-less) name.
    pub fn top(&self, name: &str) -> Option<Node<'_, 'a>> {
        child(self.root(), name)
    }

    pub fn facts(&self) -> Facts {
        let root = self.root();
        let text_of = |n: Option<Node>| n.and_then(|n| n.text()).map(|t| t.trim().to_string());
        let os = self.top("os");
        let devices = self.top("devices");
        let vsock = devices.and_then(|d| child(d, "vsock")).map(|v| {
            let cid = child(v, "cid");
            VsockFacts {
                auto: cid.and_then(|c| c.attribute("auto")) == Some("yes"),
                cid: cid
                    .and_then(|c| c.attribute("address"))
                    .and_then(|a| a.parse().ok()),
            }
        });
        let interfaces = devices
            .map(|d| {
                children(d, "interface")
                    .filter_map(|i| child(i, "target").and_then(|t| t.attribute("dev")))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Facts {
            name: text_of(child(root, "name")).unwrap_or_default(),
            uuid: text_of(child(root, "uuid")),
            id: root.attribute("id").and_then(|s| s.parse().ok()),
            direct_kernel: os.and_then(|o| child(o, "kernel")).is_some(),
            vsock,
            interfaces,
        }
    }
}

/// The parts of a domain any virt-systemd code looks at: the root element's children, all
/// of `<name>`, `<uuid>`, `<os>`, `<sysinfo>`, the children of `<devices>` with all of
/// `<vsock>` and `<interface>`, the children of `<metadata>` with all of ours. Everything
/// else (disks, controllers, foreign metadata…) stays out of the tree.
pub fn keep(p: &Place) -> Keep {
    let plain = p.namespace.is_none();
    match (p.depth, p.parent, p.name) {
        (1, ..) => Keep::Select,
        (2, _, "name" | "uuid" | "os" | "sysinfo" | "memoryBacking") if plain => Keep::All,
        (2, _, "commandline") if p.namespace == Some(crate::render::vhost_user::QEMU_NS) => {
            Keep::All
        }
        (2, _, "devices" | "metadata") if plain => Keep::Select,
        (3, "devices", "vsock" | "interface") if plain => Keep::All,
        (3, "metadata", _) if p.namespace == Some(crate::METADATA_NS) => Keep::All,
        (3, "metadata", _) if p.namespace == Some(crate::notify::carry::READINESS_NS) => Keep::All,
        _ => Keep::Nothing,
    }
}

thread_local! {
    static FULL_TREES: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with [`DomainXml::parse`] keeping whole trees, so tests can check that what
/// [`keep`] leaves out changes no result.
#[doc(hidden)]
pub fn with_full_trees<T>(f: impl FnOnce() -> T) -> T {
    let was = FULL_TREES.with(|c| c.replace(true));
    let out = f();
    FULL_TREES.with(|c| c.set(was));
    out
}

fn parse_error(text: &str, e: &XmlError) -> Error {
    let msg = match &e.kind {
        ErrorKind::Doctype => {
            "a DOCTYPE is not accepted in a domain XML (entities are never expanded or fetched)"
                .to_string()
        }
        ErrorKind::NoRoot => "no root element".to_string(),
        ErrorKind::Truncated => "document is truncated (unexpected end of input)".to_string(),
        ErrorKind::UnknownToken => {
            if text
                .trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('<')
            {
                "unexpected content; a document has exactly one root element".to_string()
            } else {
                "text where markup was expected".to_string()
            }
        }
        ErrorKind::Other(m) => m.clone(),
    };
    let (line, column) = line_col(text.as_bytes(), e.pos);
    Error::Parse {
        input: String::new(),
        line,
        column,
        msg,
    }
}

/// First child element named `name` without a namespace.
pub fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| is_named(c, name))
}

fn is_named(c: &Node, name: &str) -> bool {
    c.is_element() && c.tag_name().name() == name && c.tag_name().namespace().is_none()
}

pub fn children<'a, 'i: 'a>(
    n: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is_named(c, name))
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VsockFacts {
    pub auto: bool,
    pub cid: Option<u32>,
}

/// What other modules need to know about a domain, read without libvirt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    pub name: String,
    pub uuid: Option<String>,
    /// `id` attribute of a running domain's live XML.
    pub id: Option<i64>,
    /// `<os><kernel>` present: the kernel command line is in `<os><cmdline>`.
    pub direct_kernel: bool,
    pub vsock: Option<VsockFacts>,
    /// `<interface><target dev=…>` names, in document order.
    pub interfaces: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_from_live_xml() {
        let xml = r#"<domain type='kvm' id='7'><name>web</name>
          <uuid>6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f</uuid>
          <os><type>hvm</type><kernel>/k</kernel></os>
          <devices><interface type='network'><target dev='vnet3'/></interface>
          <interface type='user'/><vsock model='virtio'><cid auto='yes' address='42'/></vsock>
          </devices></domain>"#;
        let d = DomainXml::parse(xml).unwrap();
        let f = d.facts();
        assert_eq!(f.name, "web");
        assert_eq!(f.id, Some(7));
        assert!(f.direct_kernel);
        assert_eq!(f.interfaces, vec!["vnet3"]);
        assert_eq!(
            f.vsock,
            Some(VsockFacts {
                auto: true,
                cid: Some(42)
            })
        );
    }
}
