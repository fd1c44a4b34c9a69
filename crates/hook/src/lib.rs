//! virt-systemd's libvirt hook (`hook`) and what it needs of the host: its own D-Bus client
//! (`dbus_wire`), systemd-machined (`machined`, `observe`), the per-domain state files
//! (`state`) and journald logging (`logging`). Never links libvirt (a test checks).

pub mod dbus_wire;
pub mod hook;
pub mod logging;
pub mod machined;
pub mod machined_varlink;
pub mod observe;
pub mod state;

// The core's modules under the names this crate's code uses (`crate::config`, …).
pub(crate) use virt_systemd_core::{config, domain, fsutil, metadata, notify, report};
