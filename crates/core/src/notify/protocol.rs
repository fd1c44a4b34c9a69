//! sd_notify messages from a guest's systemd (DESIGN §6): newline-separated `KEY=VALUE`
//! assignments. Pure: bytes in, readiness state out. Bounded: oversized values and
//! unit lists are cut, unknown keys ignored, so no guest can grow the host's state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Largest message accepted from one connection.
pub const MESSAGE_MAX: usize = 16 * 1024;
/// Longest value kept (STATUS= and friends).
pub const VALUE_MAX: usize = 1024;
/// Most units remembered as active.
pub const UNITS_MAX: usize = 64;
pub const SSH_UNIT: &str = "ssh-access.target";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Readiness {
    pub ready: bool,
    pub status: Option<String>,
    pub reloading: bool,
    pub stopping: bool,
    pub exit_status: Option<String>,
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub units_active: BTreeSet<String>,
    pub shutdown: Option<String>,
    /// Messages applied, and when the last one came (seconds since the epoch).
    pub messages: u64,
    pub updated: u64,
}

impl Readiness {
    pub fn ssh(&self) -> bool {
        self.units_active.contains(SSH_UNIT)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Assignments we understood, in order.
    pub known: Vec<(String, String)>,
    /// Lines that were not `KEY=VALUE` with a valid key.
    pub malformed: usize,
}

fn key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

const KNOWN: &[&str] = &[
    "READY",
    "STATUS",
    "RELOADING",
    "STOPPING",
    "EXIT_STATUS",
    "X_SYSTEMD_HOSTNAME",
    "X_SYSTEMD_MACHINE_ID",
    "X_SYSTEMD_UNIT_ACTIVE",
    "X_SYSTEMD_UNIT_INACTIVE",
    "X_SYSTEMD_SHUTDOWN",
];

pub fn parse(msg: &[u8]) -> Parsed {
    let msg = &msg[..msg.len().min(MESSAGE_MAX)];
    let mut p = Parsed {
        known: vec![],
        malformed: 0,
    };
    for line in msg.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        match text.split_once('=') {
            Some((k, v)) if key_ok(k) => {
                if KNOWN.contains(&k) {
                    let v: String = v
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(VALUE_MAX)
                        .collect();
                    p.known.push((k.to_string(), v));
                }
            }
            _ => p.malformed += 1,
        }
    }
    p
}

/// Apply assignments; returns whether anything changed.
pub fn apply(r: &mut Readiness, known: &[(String, String)], now: u64) -> bool {
    let before = r.clone();
    for (k, v) in known {
        match k.as_str() {
            "READY" if v == "1" => {
                r.ready = true;
                r.reloading = false;
            }
            "STATUS" => r.status = Some(v.clone()),
            "RELOADING" => r.reloading = v == "1",
            "STOPPING" if v == "1" => {
                r.stopping = true;
                r.ready = false;
            }
            "EXIT_STATUS" => r.exit_status = Some(v.clone()),
            "X_SYSTEMD_HOSTNAME" => r.hostname = Some(v.clone()),
            "X_SYSTEMD_MACHINE_ID" => r.machine_id = Some(v.clone()),
            "X_SYSTEMD_UNIT_ACTIVE" if r.units_active.len() < UNITS_MAX => {
                r.units_active.insert(v.clone());
            }
            "X_SYSTEMD_UNIT_INACTIVE" => {
                r.units_active.remove(v);
            }
            "X_SYSTEMD_SHUTDOWN" => r.shutdown = Some(v.clone()),
            _ => {}
        }
    }
    let changed = *r != before;
    if !known.is_empty() {
        r.messages += 1;
        r.updated = now;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemd_messages() {
        let p = parse(b"READY=1\nSTATUS=Startup finished in 3s\nX_SYSTEMD_UNIT_ACTIVE=ssh-access.target\nBARRIER=1\nbogus\n=x\nlower=1\n");
        assert_eq!(p.malformed, 3);
        assert_eq!(p.known.len(), 3);
        let mut r = Readiness::default();
        assert!(apply(&mut r, &p.known, 7));
        assert!(r.ready && r.ssh());
        assert_eq!(r.status.as_deref(), Some("Startup finished in 3s"));
        assert_eq!((r.messages, r.updated), (1, 7));
        apply(
            &mut r,
            &parse(b"X_SYSTEMD_UNIT_INACTIVE=ssh-access.target\nSTOPPING=1").known,
            8,
        );
        assert!(!r.ready && r.stopping && !r.ssh());
    }

    #[test]
    fn bounded() {
        let mut big = b"STATUS=".to_vec();
        big.extend(std::iter::repeat_n(b'x', 100_000));
        let p = parse(&big);
        assert_eq!(p.known[0].1.len(), VALUE_MAX);
        let mut r = Readiness::default();
        for i in 0..1000 {
            apply(
                &mut r,
                &parse(format!("X_SYSTEMD_UNIT_ACTIVE=u{i}.service").as_bytes()).known,
                0,
            );
        }
        assert_eq!(r.units_active.len(), UNITS_MAX);
        // Control characters never reach logs or state.
        let p = parse(b"STATUS=a\x1b[31mred\rx");
        assert_eq!(p.known[0].1, "a[31mredx");
        // Invalid UTF-8 is replaced, not fatal.
        assert_eq!(parse(b"STATUS=\xff\n").known[0].1, "\u{fffd}");
    }
}
