//! virt-systemd's host services: the readiness listener (`notify-listener`, the
//! `virt-systemd-notify.socket` unit), which maps guests' AF_VSOCK notifications to domains
//! through the hook's state files.

pub mod listener;
