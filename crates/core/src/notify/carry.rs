//! Readiness that travels with the running domain: the control service mirrors the
//! listener's record into the domain's *live* metadata (`virDomainSetMetadata`,
//! `VIR_DOMAIN_AFFECT_LIVE`), which libvirt migrates with the domain and keeps across
//! libvirtd restarts, and never writes to the persistent definition, so a fresh start has
//! none. The hook on a destination host reads it from the XML libvirt hands it and
//! restores the record there. A namespace of its own: setting metadata replaces the
//! element of that namespace, and the intent record (`urn:virt-systemd:domain:1`) must stay.

use super::protocol::Readiness;
use crate::domain::DomainXml;
use crate::xmltext::escape_text;

pub const READINESS_NS: &str = "urn:virt-systemd:readiness:1";
/// The element's local name and the prefix libvirt is given for it.
pub const ELEMENT: &str = "readiness";
pub const PREFIX: &str = "vsr";

/// The element for `virDomainSetMetadata` (libvirt sets the namespace on it).
pub fn element(r: &Readiness) -> String {
    let json = serde_json::to_string(r).expect("serializable");
    format!("<{ELEMENT}>{}</{ELEMENT}>", escape_text(&json))
}

/// The readiness carried in `d`'s metadata, if any (unreadable content counts as none).
pub fn read(d: &DomainXml) -> Option<Readiness> {
    let md = crate::metadata::container(d)?;
    let el = md.children().find(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(READINESS_NS)
            && n.tag_name().name() == ELEMENT
    })?;
    serde_json::from_str(el.text()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_libvirt_style_metadata() {
        let mut r = Readiness {
            ready: true,
            status: Some("up <&> \"quoted\" ]]>".into()),
            messages: 3,
            updated: 1_790_000_000,
            ..Readiness::default()
        };
        r.units_active.insert("ssh-access.target".into());
        let el = element(&r);
        // As libvirt stores it: its own prefix and namespace declaration.
        let inner = el
            .replacen(
                "<readiness>",
                "<vsr:readiness xmlns:vsr='urn:virt-systemd:readiness:1'>",
                1,
            )
            .replacen("</readiness>", "</vsr:readiness>", 1);
        let xml = format!(
            "<domain type='kvm'><name>v</name><metadata><x:other xmlns:x='urn:x'/>{inner}</metadata></domain>"
        );
        let d = DomainXml::parse(&xml).unwrap();
        assert_eq!(read(&d), Some(r));
        // None without the element, and for garbage in it.
        let d = DomainXml::parse("<domain><name>v</name><metadata/></domain>").unwrap();
        assert_eq!(read(&d), None);
        let bad = "<domain><name>v</name><metadata><r:readiness xmlns:r='urn:virt-systemd:readiness:1'>{</r:readiness></metadata></domain>";
        assert_eq!(read(&DomainXml::parse(bad).unwrap()), None);
    }
}
