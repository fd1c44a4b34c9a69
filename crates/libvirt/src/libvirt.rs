//! The libvirt adapter (the `virt` crate). Only this binary links libvirt: the hook must
//! not (it starts on every lifecycle event and must never call back into libvirt).
//!
//! libvirt errors become the library's error classes, each with its own exit code:
//! unknown domain, cannot connect, permission denied; anything else is a plain failure.

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;
use virt::sys;
use virt_systemd::error::{Error, Result};

pub struct Libvirt {
    conn: Connect,
    uri: String,
}

/// Classify a libvirt error; `ctx` says what we were doing.
pub fn map_err(e: &virt::error::Error, ctx: &str) -> Error {
    let msg = format!("{ctx}: {}", e.message().trim());
    match e.code().known() {
        Some(
            ErrorNumber::AuthFailed
            | ErrorNumber::AuthUnavailable
            | ErrorNumber::AuthCancelled
            | ErrorNumber::AccessDenied
            | ErrorNumber::OperationDenied,
        ) => Error::Permission(msg),
        Some(ErrorNumber::NoDomain) => Error::NoSuchDomain(msg),
        _ => Error::Failed(msg),
    }
}

fn state_word(s: DomainState) -> &'static str {
    // virsh's words.
    match s {
        DomainState::NoState => "no state",
        DomainState::Running => "running",
        DomainState::Blocked => "idle",
        DomainState::Paused => "paused",
        DomainState::Shutdown => "in shutdown",
        DomainState::Shutoff => "shut off",
        DomainState::Crashed => "crashed",
        DomainState::PMSuspended => "pmsuspended",
    }
}

impl Libvirt {
    /// Open `uri`, or libvirt's default (`LIBVIRT_DEFAULT_URI`, then its probing:
    /// qemu:///system for root, qemu:///session otherwise).
    pub fn open(uri: Option<&str>, readonly: bool) -> Result<Libvirt> {
        // libvirt's default handler prints every error to stderr; we print our own line.
        virt::error::clear_error_callback();
        let shown = uri.unwrap_or("the default URI");
        let res = if readonly {
            Connect::open_read_only(uri)
        } else {
            Connect::open(uri)
        };
        let conn = res.map_err(|e| match map_err(&e, "") {
            Error::Permission(_) => Error::Permission(format!(
                "cannot connect to {shown}: permission denied: {}",
                e.message().trim()
            )),
            _ => Error::Connect(format!("cannot connect to {shown}: {}", e.message().trim())),
        })?;
        let uri = conn
            .uri()
            .unwrap_or_else(|_| uri.unwrap_or("?").to_string());
        Ok(Libvirt { conn, uri })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The daemon side's libvirt version.
    pub fn lib_version(&self) -> Result<u32> {
        self.conn
            .lib_version()
            .map_err(|e| map_err(&e, "cannot ask libvirt for its version"))
    }

    /// The connection reaches this host (no host part in the URI): host checks such as
    /// `/dev/vhost-vsock` then say something about where domains run.
    pub fn is_local(&self) -> bool {
        self.uri
            .split_once("://")
            .is_none_or(|(_, rest)| rest.is_empty() || rest.starts_with('/'))
    }

    /// Look a domain up like virsh: by name, then UUID, then ID.
    pub fn domain(&self, what: &str) -> Result<Dom> {
        let not_found = |e: &virt::error::Error| e.code().is(ErrorNumber::NoDomain);
        let mut res = self.conn.lookup_domain_by_name(what);
        if matches!(&res, Err(e) if not_found(e)) && uuid::Uuid::parse_str(what).is_ok() {
            res = self.conn.lookup_domain_by_uuid_string(what);
        }
        if let (Err(e), Ok(id)) = (&res, what.parse::<u32>()) {
            if not_found(e) {
                res = self.conn.lookup_domain_by_id(id);
            }
        }
        match res {
            Ok(d) => Dom::new(d),
            Err(e) if not_found(&e) => Err(Error::NoSuchDomain(format!(
                "domain '{what}' not found at {}",
                self.uri
            ))),
            Err(e) => Err(map_err(&e, &format!("cannot look up domain '{what}'"))),
        }
    }

    /// All domains, sorted by name.
    pub fn domains(&self) -> Result<Vec<Dom>> {
        let mut v = self
            .conn
            .list_all_domains(0)
            .map_err(|e| map_err(&e, "cannot list domains"))?
            .into_iter()
            .map(Dom::new)
            .collect::<Result<Vec<_>>>()?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Define (persistently) from XML.
    pub fn define(&self, xml: &str) -> Result<Dom> {
        let d = self
            .conn
            .define_domain_xml(xml)
            .map_err(|e| map_err(&e, "libvirt refused the new definition"))?;
        Dom::new(d)
    }
}

pub struct Dom {
    d: Domain,
    pub name: String,
}

impl Dom {
    fn new(d: Domain) -> Result<Dom> {
        let name = d
            .name()
            .map_err(|e| map_err(&e, "cannot read a domain's name"))?;
        Ok(Dom { d, name })
    }

    fn ctx(&self, what: &str) -> String {
        format!("domain '{}': {what}", self.name)
    }

    pub fn uuid(&self) -> Result<String> {
        self.d
            .uuid_string()
            .map_err(|e| map_err(&e, &self.ctx("cannot read its UUID")))
    }

    pub fn id(&self) -> Option<u32> {
        self.d.id()
    }

    pub fn is_persistent(&self) -> Result<bool> {
        self.d
            .is_persistent()
            .map_err(|e| map_err(&e, &self.ctx("cannot tell whether it is persistent")))
    }

    pub fn is_active(&self) -> Result<bool> {
        self.d
            .is_active()
            .map_err(|e| map_err(&e, &self.ctx("cannot tell whether it is running")))
    }

    pub fn state(&self) -> String {
        match self.d.state() {
            Ok((s, _)) => s.known().map_or("unknown", state_word).to_string(),
            Err(_) => "unknown".into(),
        }
    }

    /// The persistent definition. `secure`: with passwords and other secure fields, which
    /// a define needs to keep them (refused on read-only connections).
    pub fn inactive_xml(&self, secure: bool) -> Result<String> {
        let mut flags = sys::VIR_DOMAIN_XML_INACTIVE;
        if secure {
            flags |= sys::VIR_DOMAIN_XML_SECURE;
        }
        self.d
            .xml_desc(flags)
            .map_err(|e| map_err(&e, &self.ctx("cannot read its definition")))
    }

    /// The live XML of a running domain (CID, interface names).
    pub fn live_xml(&self) -> Result<String> {
        self.d
            .xml_desc(0)
            .map_err(|e| map_err(&e, &self.ctx("cannot read its live XML")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locality() {
        let l = Libvirt::open(Some("test:///default"), false).unwrap();
        assert!(l.is_local());
        assert_eq!(l.uri(), "test:///default");
        let mut l = l;
        for (u, local) in [
            ("qemu:///system", true),
            ("qemu+ssh://root@host/system", false),
            ("qemu+unix:///system?socket=/x", true),
            ("qemu+tcp://h:16509/session", false),
        ] {
            l.uri = u.into();
            assert_eq!(l.is_local(), local, "{u}");
        }
    }

    #[test]
    fn errors_are_classified() {
        let e = Libvirt::open(Some("qemu+unix:///system?socket=/nonexistent/sock"), false)
            .err()
            .unwrap();
        assert!(matches!(e, Error::Connect(_)), "{e}");
        assert!(e.to_string().contains("/nonexistent/sock"), "{e}");
        let l = Libvirt::open(Some("test:///default"), false).unwrap();
        assert!(matches!(l.domain("nope"), Err(Error::NoSuchDomain(_))));
        // virsh-like lookups: name, UUID, ID.
        let t = l.domain("test").unwrap();
        let u = t.uuid().unwrap();
        assert_eq!(l.domain(&u).unwrap().name, "test");
        assert_eq!(l.domain("1").unwrap().name, "test");
        // A read-only connection cannot define: permission denied.
        let ro = Libvirt::open(Some("test:///default"), true).unwrap();
        let x = ro.domain("test").unwrap().inactive_xml(false).unwrap();
        assert!(matches!(ro.define(&x), Err(Error::Permission(_))));
    }
}
