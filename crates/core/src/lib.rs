//! virt-systemd's core: domain XML reading and lossless rewriting, credentials, intent,
//! the `<metadata>` record, the config file and the readiness protocol. Pure logic over
//! bytes and files: no libvirt, no D-Bus, so the fuzz target, the benches and these tests
//! build only this crate.

pub mod config;
pub mod credential;
pub mod domain;
pub mod error;
pub mod fsutil;
pub mod intent;
pub mod metadata;
pub mod notify;
pub mod render;
pub mod report;
pub mod scope;
pub mod xmltext;
pub mod xtree;

pub use error::{Error, ExitCode};

/// Namespace of the `<metadata>` child that records what virt-systemd manages.
pub const METADATA_NS: &str = "urn:virt-systemd:domain:1";
/// Local name of that element.
pub const METADATA_ELEMENT: &str = "virt-systemd";
/// vsock port the guest's systemd is told to send readiness notifications to
/// (`vmm.notify_socket=vsock-stream:2:PORT`). Unassigned by IANA; documented in the README.
pub const DEFAULT_NOTIFY_PORT: u32 = 8742;
