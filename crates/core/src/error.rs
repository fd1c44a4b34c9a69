//! Library errors and the process exit codes they map to.
//!
//! Messages never contain credential values: they name the credential instead.

use std::path::PathBuf;

/// Distinct, documented exit codes, one per class of failure (see README "Exit codes").
///
/// | code | meaning |
/// |---|---|
/// | 0 | success (also: nothing to change) |
/// | 1 | other failure; `doctor`: at least one check failed; a libvirt error not listed below |
/// | 2 | usage error (clap) |
/// | 3 | an input file cannot be read |
/// | 4 | not well-formed XML |
/// | 5 | XML that is not a libvirt `<domain>` |
/// | 6 | invalid request (a validation rule) |
/// | 7 | conflict with what is there (hand-written entries, `<smbios mode>`, a foreign hook file) |
/// | 8 | the output cannot be written |
/// | 9 | the configuration file is invalid |
/// | 10 | libvirt knows no such domain |
/// | 11 | cannot connect to libvirt (bad or unreachable URI, no daemon) |
/// | 12 | permission denied (libvirt authentication/ACL, read-only connection, hooks dir) |
/// | 13 | the domain's definition changed while we were rewriting it; nothing was written |
/// | 14 | the domain is transient: there is no persistent definition to change |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    InputUnreadable = 3,
    NotXml = 4,
    NotDomain = 5,
    Invalid = 6,
    Conflict = 7,
    OutputFailed = 8,
    Config = 9,
    /// libvirt knows no such domain (name, UUID or ID).
    NoSuchDomain = 10,
    /// The connection URI cannot be opened: unknown driver, no daemon, unreachable host.
    CannotConnect = 11,
    /// libvirt refused for lack of rights (polkit/ACL, read-only connection), or a file
    /// (the hooks dir) cannot be changed by this user.
    PermissionDenied = 12,
    /// The persistent definition changed between our read and our define; nothing written.
    ChangedConcurrently = 13,
    /// The domain is transient (no persistent definition); `enable`/`disable` refuse.
    Transient = 14,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `input` names the file ("" until the caller knows it).
    #[error("{}{line}:{column}: not well-formed XML: {msg}", if input.is_empty() { String::new() } else { format!("{input}:") })]
    Parse {
        input: String,
        line: u32,
        column: u32,
        msg: String,
    },
    #[error("{0}")]
    NotDomain(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Config { path: String, msg: String },
    /// Unknown domain (exit 10).
    #[error("{0}")]
    NoSuchDomain(String),
    /// Cannot open the libvirt connection (exit 11).
    #[error("{0}")]
    Connect(String),
    /// Permission denied by libvirt or the file system (exit 12).
    #[error("{0}")]
    Permission(String),
    /// Definition changed under us (exit 13).
    #[error("{0}")]
    Changed(String),
    /// Transient domain (exit 14).
    #[error("{0}")]
    Transient(String),
    /// Any other failure, e.g. an unexpected libvirt error, or failed `doctor` checks (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Read { .. } => ExitCode::InputUnreadable,
            Error::Parse { .. } => ExitCode::NotXml,
            Error::NotDomain(_) => ExitCode::NotDomain,
            Error::Invalid(_) => ExitCode::Invalid,
            Error::Conflict(_) => ExitCode::Conflict,
            Error::Write { .. } => ExitCode::OutputFailed,
            Error::Config { .. } => ExitCode::Config,
            Error::NoSuchDomain(_) => ExitCode::NoSuchDomain,
            Error::Connect(_) => ExitCode::CannotConnect,
            Error::Permission(_) => ExitCode::PermissionDenied,
            Error::Changed(_) => ExitCode::ChangedConcurrently,
            Error::Transient(_) => ExitCode::Transient,
            Error::Failed(_) => ExitCode::Failure,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
