//! virt-systemd: wire libvirt/QEMU domains into systemd's VM interface.
//!
//! The core (XML reading, intent, rendering, policy) does no I/O; adapters for files,
//! D-Bus and libvirt live in their own modules so the core is testable without a host.

pub mod cli;
pub mod config;
pub mod credential;
pub mod dbus_wire;
pub mod domain;
pub mod error;
pub mod fsutil;
pub mod hook;
pub mod intent;
pub mod logging;
pub mod machined;
pub mod metadata;
pub mod notify;
pub mod render;
pub mod report;
pub mod state;
pub mod xdom;
pub mod xmltext;

pub use error::{Error, ExitCode};

/// Namespace of the `<metadata>` child that records what virt-systemd manages.
pub const METADATA_NS: &str = "urn:virt-systemd:domain:1";
/// Local name of that element.
pub const METADATA_ELEMENT: &str = "virt-systemd";
/// vsock port the guest's systemd is told to send readiness notifications to
/// (`vmm.notify_socket=vsock-stream:2:PORT`). Unassigned by IANA; documented in the README.
pub const DEFAULT_NOTIFY_PORT: u32 = 8742;
pub mod diff;
pub mod doctor;
pub mod observe;
