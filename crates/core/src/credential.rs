//! systemd credentials as SMBIOS OEM strings / fw_cfg entries: names, values, limits.
//!
//! Rules follow systemd's `credential_name_valid()` (a valid file name of at most
//! NAME_MAX bytes) plus what the OEM-string encoding needs (no `=` in names, no `:`).
//! Errors name the credential, never its value.

use crate::error::{Error, Result};
use base64::Engine;

pub const TEXT_PREFIX: &str = "io.systemd.credential:";
pub const BINARY_PREFIX: &str = "io.systemd.credential.binary:";
pub const STUB_CMDLINE_PREFIX: &str = "io.systemd.stub.kernel-cmdline-extra=";
pub const BOOT_CMDLINE_PREFIX: &str = "io.systemd.boot.kernel-cmdline-extra=";
pub const SYSTEMD_PREFIX: &str = "io.systemd.";
/// fw_cfg directory systemd imports credentials from (`/sys/firmware/qemu_fw_cfg/by_name/…`).
pub const FWCFG_PREFIX: &str = "opt/io.systemd.credentials/";
/// QEMU's FW_CFG_MAX_FILE_PATH is 56 bytes including the terminating NUL.
pub const FWCFG_NAME_MAX: usize = 55;
/// systemd's CREDENTIAL_SIZE_MAX and CREDENTIALS_TOTAL_SIZE_MAX.
pub const CREDENTIAL_SIZE_MAX: usize = 1024 * 1024;
pub const CREDENTIALS_TOTAL_MAX: usize = 1024 * 1024;
/// All OEM strings form one SMBIOS type 11 structure, whose count field is one byte.
pub const OEM_STRINGS_MAX: usize = 255;
pub const NAME_MAX: usize = 255;

/// Well-known credential names.
pub const HOSTNAME: &str = "system.hostname";
pub const MACHINE_ID: &str = "system.machine_id";
pub const SSH_KEYS_ROOT: &str = "ssh.authorized_keys.root";
pub const NOTIFY_SOCKET: &str = "vmm.notify_socket";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `io.systemd.credential:NAME=VALUE`
    Text,
    /// `io.systemd.credential.binary:NAME=BASE64`
    Binary,
    /// `<sysinfo type='fwcfg'>` entry pointing at a host file
    Fwcfg,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Binary => "binary",
            Kind::Fwcfg => "fwcfg",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "text" => Some(Kind::Text),
            "binary" => Some(Kind::Binary),
            "fwcfg" => Some(Kind::Fwcfg),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Binary(Vec<u8>),
    /// Absolute path of a host file QEMU reads at start; the value never enters the XML.
    File(String),
}

// Values are secrets: never let them reach a log line through Debug.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => write!(f, "Text(<{} bytes>)", s.len()),
            Value::Binary(b) => write!(f, "Binary(<{} bytes>)", b.len()),
            Value::File(p) => write!(f, "File({p})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub value: Value,
}

impl Credential {
    pub fn kind(&self) -> Kind {
        match self.value {
            Value::Text(_) => Kind::Text,
            Value::Binary(_) => Kind::Binary,
            Value::File(_) => Kind::Fwcfg,
        }
    }

    /// Size the guest sees (decoded bytes); unknown (0) for fw_cfg files.
    pub fn size(&self) -> usize {
        match &self.value {
            Value::Text(s) => s.len(),
            Value::Binary(b) => b.len(),
            Value::File(_) => 0,
        }
    }

    /// Check name, value and per-credential size.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        match &self.value {
            Value::Text(s) => {
                if let Some(c) = s.chars().find(|&c| !crate::xmltext::is_xml_char(c)) {
                    return Err(Error::invalid(format!(
                        "credential {}: value contains character U+{:04X}, which cannot be carried \
                         in a domain XML; pass it with --credential-file (base64-encoded)",
                        self.name, c as u32
                    )));
                }
            }
            Value::Binary(_) => {}
            Value::File(p) => {
                if !p.starts_with('/') {
                    return Err(Error::invalid(format!(
                        "secret credential {}: {p:?} is not an absolute path (QEMU reads it when the domain starts)",
                        self.name
                    )));
                }
                let full = FWCFG_PREFIX.len() + self.name.len();
                if full > FWCFG_NAME_MAX {
                    return Err(Error::invalid(format!(
                        "secret credential {}: fw_cfg name {FWCFG_PREFIX}{} is {full} bytes, QEMU allows {FWCFG_NAME_MAX} \
                         (credential names up to {} bytes)",
                        self.name,
                        self.name,
                        FWCFG_NAME_MAX - FWCFG_PREFIX.len()
                    )));
                }
                if p.chars().any(|c| c.is_control()) {
                    return Err(Error::invalid(format!(
                        "secret credential {}: path contains control characters",
                        self.name
                    )));
                }
            }
        }
        if self.size() > CREDENTIAL_SIZE_MAX {
            return Err(Error::invalid(format!(
                "credential {}: value is {} bytes, the limit is {CREDENTIAL_SIZE_MAX} (1 MiB)",
                self.name,
                self.size()
            )));
        }
        Ok(())
    }

    /// The OEM string for text and binary credentials.
    pub fn oem_string(&self) -> Option<String> {
        match &self.value {
            Value::Text(s) => Some(format!("{TEXT_PREFIX}{}={s}", self.name)),
            Value::Binary(b) => Some(format!(
                "{BINARY_PREFIX}{}={}",
                self.name,
                base64::engine::general_purpose::STANDARD.encode(b)
            )),
            Value::File(_) => None,
        }
    }
}

/// systemd's `credential_name_valid()`, plus the separators of the OEM-string encoding.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "credential name {name:?} is not valid: {why}"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("it is not a file name");
    }
    if name.len() > NAME_MAX {
        return bad(&format!(
            "it is {} bytes, the limit is {NAME_MAX}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '=' || c.is_control())
    {
        return bad(&format!("it contains {c:?}"));
    }
    Ok(())
}

/// Total size check over all credentials (guest limit).
pub fn validate_total(creds: &[Credential]) -> Result<()> {
    let total: usize = creds.iter().map(Credential::size).sum();
    if total > CREDENTIALS_TOTAL_MAX {
        return Err(Error::invalid(format!(
            "credentials total {total} bytes, the limit for all together is {CREDENTIALS_TOTAL_MAX} (1 MiB)"
        )));
    }
    Ok(())
}

/// What an OEM string is, as far as virt-systemd cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Oem<'s> {
    Credential {
        name: &'s str,
        binary: bool,
        value: &'s str,
    },
    StubCmdline(&'s str),
    BootCmdline(&'s str),
    /// Some other `io.systemd.` string.
    OtherSystemd,
    Foreign,
}

pub fn classify(s: &str) -> Oem<'_> {
    fn cred(rest: &str, binary: bool) -> Oem<'_> {
        match rest.split_once('=') {
            Some((name, value)) => Oem::Credential {
                name,
                binary,
                value,
            },
            None => Oem::OtherSystemd,
        }
    }
    if let Some(rest) = s.strip_prefix(BINARY_PREFIX) {
        cred(rest, true)
    } else if let Some(rest) = s.strip_prefix(TEXT_PREFIX) {
        cred(rest, false)
    } else if let Some(v) = s.strip_prefix(STUB_CMDLINE_PREFIX) {
        Oem::StubCmdline(v)
    } else if let Some(v) = s.strip_prefix(BOOT_CMDLINE_PREFIX) {
        Oem::BootCmdline(v)
    } else if s.starts_with(SYSTEMD_PREFIX) {
        Oem::OtherSystemd
    } else {
        Oem::Foreign
    }
}

/// Decode the value of an OEM credential string back into a credential value.
pub fn decode_value(binary: bool, value: &str) -> Option<Value> {
    if binary {
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .map(Value::Binary)
    } else {
        Some(Value::Text(value.to_string()))
    }
}

/// systemd's `hostname_is_valid()` without flags: LDH labels separated by single dots,
/// no leading/trailing hyphen or dot, at most 64 characters.
pub fn hostname_is_valid(s: &str) -> bool {
    if s.is_empty() || s.len() > 64 {
        return false;
    }
    let (mut dot, mut hyphen) = (true, true);
    for c in s.chars() {
        match c {
            '.' => {
                if dot || hyphen {
                    return false;
                }
                dot = true;
                hyphen = false;
            }
            '-' => {
                if dot {
                    return false;
                }
                dot = false;
                hyphen = true;
            }
            c if c.is_ascii_alphanumeric() => {
                dot = false;
                hyphen = false;
            }
            _ => return false,
        }
    }
    !dot && !hyphen
}

/// Does this line look like an OpenSSH public key (`[options] type base64 [comment]`)?
pub fn looks_like_ssh_key(line: &str) -> bool {
    line.split_whitespace().any(|w| {
        w.starts_with("ssh-")
            || w.starts_with("ecdsa-sha2-")
            || w.starts_with("sk-ssh-")
            || w.starts_with("sk-ecdsa-")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["a", "web-01", "a.b.c", "x1", &"a".repeat(64)] {
            assert!(hostname_is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "ä",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(!hostname_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn classify_oem() {
        assert_eq!(
            classify("io.systemd.credential:a=b=c"),
            Oem::Credential {
                name: "a",
                binary: false,
                value: "b=c"
            }
        );
        assert_eq!(
            classify("io.systemd.credential.binary:k=AA=="),
            Oem::Credential {
                name: "k",
                binary: true,
                value: "AA=="
            }
        );
        assert_eq!(
            classify("io.systemd.stub.kernel-cmdline-extra=x"),
            Oem::StubCmdline("x")
        );
        assert_eq!(classify("io.systemd.foo"), Oem::OtherSystemd);
        assert_eq!(classify("hello"), Oem::Foreign);
    }

    #[test]
    fn debug_hides_values() {
        let c = Credential {
            name: "pw".into(),
            value: Value::Text("hunter2".into()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
