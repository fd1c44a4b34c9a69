//! What a domain should get: host defaults, then the domain's recorded intent, then the
//! request (CLI flags), later wins. Pure: values of recorded credentials are read from the
//! document by the caller.

use crate::config::RewriteDefaults;
use crate::credential::{self, Credential, Value};
use crate::error::{Error, Result};
use crate::metadata::{ManagedCredential, Record};

/// One invocation's wishes (from flags). `None` means "not said".
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub credentials: Vec<Credential>,
    pub remove: Vec<String>,
    pub hostname: Option<String>,
    /// Public key lines, already read from files where a path was given.
    pub ssh_keys: Vec<String>,
    pub machine_id: Option<bool>,
    pub kernel_cmdline: Vec<String>,
    pub vsock: Option<bool>,
    /// The vsock device is QEMU's vhost-user-vsock-pci served by a user-space backend at
    /// this vhost-user socket (no /dev/vhost-vsock needed).
    pub vhost_user_vsock: Option<String>,
    pub notify: Option<bool>,
    pub notify_port: Option<u32>,
    pub force: bool,
}

/// The resolved intent for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Intent {
    /// Credentials with values, in the order they are rendered.
    pub credentials: Vec<Credential>,
    /// Recorded as managed, but their entry is gone from the document (drift): kept in
    /// the record, not rendered.
    pub missing: Vec<ManagedCredential>,
    pub machine_id: bool,
    pub notify: Option<u32>,
    pub vsock: bool,
    /// vsock through a user-space vhost-user backend at this socket (with `vsock`).
    pub vhost_user_vsock: Option<String>,
    pub kernel_cmdline: Option<String>,
    /// Recorded credentials now set by --machine-id/--notify instead (for a note).
    pub replaced_by_derived: Vec<String>,
}

/// Resolve. `current` gives the value a recorded credential has in the document now.
pub fn resolve(
    defaults: &RewriteDefaults,
    record: Option<&Record>,
    current: &dyn Fn(&ManagedCredential) -> Option<Value>,
    req: &Request,
) -> Result<Intent> {
    let mut it = Intent::default();
    if let Some(r) = record {
        for mc in &r.credentials {
            match current(mc) {
                Some(value) => it.credentials.push(Credential {
                    name: mc.name.clone(),
                    value,
                }),
                None => it.missing.push(mc.clone()),
            }
        }
    }
    let set = |c: Credential, it: &mut Intent| {
        it.missing.retain(|m| m.name != c.name);
        match it.credentials.iter_mut().find(|x| x.name == c.name) {
            Some(x) => *x = c,
            None => it.credentials.push(c),
        }
    };
    if let Some(h) = &req.hostname {
        if !credential::hostname_is_valid(h) {
            return Err(Error::invalid(format!(
                "hostname {h:?} is not valid: letters, digits and '-' in dot-separated labels, \
                 no leading or trailing '-' or '.', at most 64 characters"
            )));
        }
        set(text(credential::HOSTNAME, h), &mut it);
    }
    let keys = if !req.ssh_keys.is_empty() {
        &req.ssh_keys
    } else if record.is_none() {
        &defaults.ssh_keys
    } else {
        &vec![]
    };
    if !keys.is_empty() {
        set(text(credential::SSH_KEYS_ROOT, &keys.join("\n")), &mut it);
    }
    for c in &req.credentials {
        set(c.clone(), &mut it);
    }
    for name in &req.remove {
        it.credentials.retain(|c| &c.name != name);
        it.missing.retain(|c| &c.name != name);
    }

    it.machine_id = req
        .machine_id
        .or(record.map(|r| r.machine_id))
        .unwrap_or(defaults.machine_id);
    let notify_on = req
        .notify
        .or(req.notify_port.map(|_| true))
        .or(record.map(|r| r.notify.is_some()))
        .unwrap_or(defaults.notify);
    let port = req
        .notify_port
        .or(record.and_then(|r| r.notify))
        .unwrap_or(defaults.notify_port);
    if port == 0 || port == u32::MAX {
        return Err(Error::invalid(format!(
            "notify port {port} is not a usable vsock port"
        )));
    }
    it.notify = notify_on.then_some(port);
    it.vsock = req
        .vsock
        .or(record.map(|r| r.vsock))
        .unwrap_or(defaults.vsock);
    it.vhost_user_vsock = if it.vsock {
        req.vhost_user_vsock
            .clone()
            .or(record.and_then(|r| r.vhost_user_vsock.clone()))
    } else {
        None
    };
    if let Some(p) = &it.vhost_user_vsock {
        if !p.starts_with('/') || p.chars().any(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "vhost-user vsock socket {p:?} must be an absolute path without control characters"
            )));
        }
    }
    it.kernel_cmdline = if !req.kernel_cmdline.is_empty() {
        Some(req.kernel_cmdline.join(" "))
    } else if let Some(r) = record {
        r.kernel_cmdline.as_ref().map(|k| k.args.clone())
    } else if !defaults.kernel_cmdline.is_empty() {
        Some(defaults.kernel_cmdline.join(" "))
    } else {
        None
    };
    if let Some(k) = &it.kernel_cmdline {
        if let Some(c) = k.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "kernel command line contains control character U+{:04X}",
                c as u32
            )));
        }
    }

    let derived = |name: &str, it: &Intent| {
        (name == credential::MACHINE_ID && it.machine_id)
            || (name == credential::NOTIFY_SOCKET && it.notify.is_some())
    };
    // A credential recorded earlier under a name that --machine-id/--notify now set gives
    // way to them; asking for both in one request is a contradiction.
    let asked: Vec<&str> = req.credentials.iter().map(|c| c.name.as_str()).collect();
    let (keep, gone): (Vec<Credential>, Vec<Credential>) = std::mem::take(&mut it.credentials)
        .into_iter()
        .partition(|c| asked.contains(&c.name.as_str()) || !derived(&c.name, &it));
    it.credentials = keep;
    it.replaced_by_derived = gone.into_iter().map(|c| c.name).collect();
    let missing = std::mem::take(&mut it.missing);
    it.missing = missing
        .into_iter()
        .filter(|m| !derived(&m.name, &it))
        .collect();
    for c in &it.credentials {
        c.validate()?;
        if derived(&c.name, &it) {
            return Err(Error::invalid(format!(
                "credential {} is set by {}; do not pass it as a credential too",
                c.name,
                if c.name == credential::MACHINE_ID {
                    "--machine-id"
                } else {
                    "--notify"
                }
            )));
        }
    }
    credential::validate_total(&it.credentials)?;
    Ok(it)
}

fn text(name: &str, v: &str) -> Credential {
    Credential {
        name: name.to_string(),
        value: Value::Text(v.to_string()),
    }
}
