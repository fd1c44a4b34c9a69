//! Readiness notifications from guests (DESIGN §6): the pure protocol. The listener is in
//! virt-systemd-services.

pub mod carry;
pub mod protocol;
