//! Library errors and the process exit codes they map to.
//!
//! Messages never contain credential values: they name the credential instead.

use std::path::PathBuf;

/// Distinct, documented exit codes, one per class of failure (see README "Exit codes").
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
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
