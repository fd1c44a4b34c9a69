//! Readiness notifications from guests (DESIGN §6): the pure protocol and the listener.

pub mod listener;
pub mod protocol;
