//! virt-systemd: the CLI (`cli`, `doctor`) over the workspace's parts: the rewrite core
//! (virt-systemd-core), the hook and machined client (virt-systemd-hook) and the host
//! services (virt-systemd-services). Their modules are re-exported under one path so the
//! CLI, `virt-systemd-libvirt` and the tests name them alike (`virt_systemd::config`, …).

pub mod cli;
pub mod doctor;
pub mod machinectl;

pub use virt_systemd_core::{
    config, credential, domain, error, fsutil, intent, metadata, render, report, scope, xmltext,
    xtree, Error, ExitCode, DEFAULT_NOTIFY_PORT, METADATA_ELEMENT, METADATA_NS,
};
pub use virt_systemd_hook::{dbus_wire, hook, logging, machined, observe, state};

/// Readiness: the protocol (core) and the listener (services).
pub mod notify {
    pub use virt_systemd_core::notify::{carry, protocol};
    pub use virt_systemd_services::listener;
}
