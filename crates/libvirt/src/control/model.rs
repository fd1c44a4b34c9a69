//! The control service's pure logic: libvirt states and events as `io.systemd.MachineInstance`
//! presents them, and which sockets to open or remove. No I/O, so it is tested without a host.

use std::collections::BTreeSet;

// libvirt's enum values (libvirt-domain.h); stable ABI since 0.9.
const RUNNING: u32 = 1;
const BLOCKED: u32 = 2;
const PAUSED: u32 = 3;
const SHUTDOWN: u32 = 4;
const SHUTOFF: u32 = 5;
const CRASHED: u32 = 6;
const PMSUSPENDED: u32 = 7;

/// `Describe`: libvirt's state and reason as QEMU's `query-status` run states (what vmspawn
/// answers), and whether the guest's vCPUs run.
pub fn describe(state: u32, reason: i32) -> (bool, &'static str) {
    match state {
        RUNNING | BLOCKED => (true, "running"),
        // "Being shut down": the guest still runs until it powers off.
        SHUTDOWN => (true, "running"),
        PAUSED => (
            false,
            match reason {
                2 | 12 => "postmigrate", // MIGRATION, POSTCOPY
                3 | 9 => "save-vm",      // SAVE, SNAPSHOT
                5 => "io-error",         // IOERROR
                6 => "watchdog",         // WATCHDOG
                7 => "restore-vm",       // FROM_SNAPSHOT
                8 => "shutdown",         // SHUTTING_DOWN
                10 => "guest-panicked",  // CRASHED
                11 => "prelaunch",       // STARTING_UP
                14 => "internal-error",  // API_ERROR
                _ => "paused",           // USER, DUMP, UNKNOWN, POSTCOPY_FAILED
            },
        ),
        SHUTOFF => (false, "shutdown"),
        CRASHED => (false, "guest-panicked"),
        PMSUSPENDED => (false, "suspended"),
        _ => (false, "internal-error"),
    }
}

/// A libvirt lifecycle event of one domain, as `SubscribeEvents` sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// QEMU's event name where QEMU has one (`STOP`, `RESUME`, `SHUTDOWN`, `RESET`,
    /// `SUSPEND`, `GUEST_PANICKED`), else `STOPPED` for the end of QEMU.
    pub name: &'static str,
    /// libvirt's event and detail, lower case (`suspended`/`paused`).
    pub libvirt_event: &'static str,
    pub libvirt_detail: &'static str,
}

impl Event {
    /// The domain's QEMU is gone: the last event of a subscription.
    pub fn is_final(&self) -> bool {
        self.name == "STOPPED"
    }

    /// The reboot event (`VIR_DOMAIN_EVENT_ID_REBOOT`): the guest reset.
    pub fn reset() -> Event {
        Event {
            name: "RESET",
            libvirt_event: "reboot",
            libvirt_detail: "-",
        }
    }
}

/// Map `VIR_DOMAIN_EVENT_ID_LIFECYCLE` (event, detail). `None`: not worth a subscriber's
/// attention (defined, undefined, started: no socket exists before the start).
pub fn lifecycle(event: i32, detail: i32) -> Option<Event> {
    let pick = |names: &[&'static str]| names.get(detail as usize).copied().unwrap_or("unknown");
    let (name, ev, det) = match event {
        3 => (
            "STOP",
            "suspended",
            pick(&[
                "paused",
                "migrated",
                "ioerror",
                "watchdog",
                "restored",
                "from-snapshot",
                "api-error",
                "postcopy",
                "postcopy-failed",
            ]),
        ),
        4 => (
            "RESUME",
            "resumed",
            pick(&[
                "unpaused",
                "migrated",
                "from-snapshot",
                "postcopy",
                "postcopy-failed",
            ]),
        ),
        5 => (
            "STOPPED",
            "stopped",
            pick(&[
                "shutdown",
                "destroyed",
                "crashed",
                "migrated",
                "saved",
                "failed",
                "from-snapshot",
                "recreated",
            ]),
        ),
        6 => ("SHUTDOWN", "shutdown", pick(&["finished", "guest", "host"])),
        7 => ("SUSPEND", "pmsuspended", pick(&["memory", "disk"])),
        8 => (
            "GUEST_PANICKED",
            "crashed",
            pick(&["panicked", "crashloaded"]),
        ),
        _ => return None,
    };
    Some(Event {
        name,
        libvirt_event: ev,
        libvirt_detail: det,
    })
}

/// Does a `SubscribeEvents` filter (event names; `None` or empty: all) let `e` through?
/// The final event always passes: it tells the subscriber the stream ends.
pub fn wanted(filter: Option<&[String]>, e: &Event) -> bool {
    match filter {
        Some(f) if !f.is_empty() => e.is_final() || f.iter().any(|n| n == e.name),
        _ => true,
    }
}

/// How a failed libvirt call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `io.systemd.MachineInstance.NotConnected`: libvirt cannot be reached.
    NotConnected,
    /// `io.systemd.MachineInstance.NotSupported`: the driver cannot do it.
    NotSupported,
    /// `io.systemd.System` with this errno: machinectl shows its text.
    Errno(i32),
}

/// Classify a libvirt error number (`virErrorNumber`). Never `Errno(EOPNOTSUPP)`: on that one
/// machinectl falls back to sending QEMU a signal, which kills the VM (DESIGN §8).
pub fn failure(code: i32) -> Failure {
    match code {
        5 | 6 | 39 => Failure::NotConnected, // NO_CONNECT, INVALID_CONN, RPC
        3 | 74 | 84 => Failure::NotSupported, // NO_SUPPORT, ARGUMENT/OPERATION_UNSUPPORTED
        42 => Failure::Errno(libc::ESRCH),   // NO_DOMAIN: it went away meanwhile
        55 => Failure::Errno(libc::EBUSY),   // OPERATION_INVALID: not in a state for it
        29 | 45 => Failure::Errno(libc::EPERM), // OPERATION_DENIED, AUTH_FAILED
        68 | 86 => Failure::Errno(libc::ETIMEDOUT), // OPERATION_TIMEOUT, AGENT_UNRESPONSIVE
        _ => Failure::Errno(libc::EIO),
    }
}

/// What reconciliation does, given the domains libvirt runs, those served now and the
/// entries found in the socket directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: Vec<uuid::Uuid>,
    pub stop: Vec<uuid::Uuid>,
    /// Directory entries that belong to no running domain (left by an earlier run).
    pub remove: Vec<String>,
}

pub fn plan(
    running: &BTreeSet<uuid::Uuid>,
    serving: &BTreeSet<uuid::Uuid>,
    entries: &[String],
) -> Plan {
    Plan {
        start: running.difference(serving).copied().collect(),
        stop: serving.difference(running).copied().collect(),
        remove: entries
            .iter()
            .filter(|e| {
                uuid::Uuid::parse_str(e).map_or(true, |u: uuid::Uuid| {
                    !running.contains(&u) || e.as_str() != u.hyphenated().to_string()
                })
            })
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_qemu_run_states() {
        assert_eq!(describe(RUNNING, 1), (true, "running"));
        assert_eq!(describe(PAUSED, 1), (false, "paused"));
        assert_eq!(describe(PAUSED, 5), (false, "io-error"));
        assert_eq!(describe(PAUSED, 11), (false, "prelaunch"));
        assert_eq!(describe(SHUTOFF, 1), (false, "shutdown"));
        assert_eq!(describe(CRASHED, 1), (false, "guest-panicked"));
        assert_eq!(describe(PMSUSPENDED, 0), (false, "suspended"));
        assert_eq!(describe(0, 0), (false, "internal-error"));
    }

    #[test]
    fn lifecycle_events_get_qemu_names() {
        let e = lifecycle(3, 0).unwrap();
        assert_eq!(
            (e.name, e.libvirt_event, e.libvirt_detail),
            ("STOP", "suspended", "paused")
        );
        assert_eq!(lifecycle(4, 0).unwrap().name, "RESUME");
        let e = lifecycle(5, 1).unwrap();
        assert!(e.is_final());
        assert_eq!(e.libvirt_detail, "destroyed");
        assert_eq!(lifecycle(6, 1).unwrap().name, "SHUTDOWN");
        assert_eq!(lifecycle(5, 99).unwrap().libvirt_detail, "unknown");
        assert_eq!(
            lifecycle(2, 0),
            None,
            "started: nobody can be subscribed yet"
        );
        assert_eq!(lifecycle(0, 0), None);
        assert_eq!(lifecycle(-1, 0), None);
    }

    #[test]
    fn filter_passes_named_events_and_always_the_last() {
        let stop = lifecycle(3, 0).unwrap();
        let end = lifecycle(5, 0).unwrap();
        let f = vec!["RESUME".to_string()];
        assert!(!wanted(Some(&f), &stop));
        assert!(wanted(Some(&f), &end));
        assert!(wanted(Some(&[]), &stop));
        assert!(wanted(None, &stop));
        assert!(wanted(Some(&["STOP".into()]), &stop));
    }

    #[test]
    fn no_failure_reads_as_eopnotsupp() {
        // machinectl would fall back to killing QEMU with a signal.
        for code in -1..200 {
            assert_ne!(
                failure(code),
                Failure::Errno(libc::EOPNOTSUPP),
                "code {code}"
            );
        }
        assert_eq!(failure(84), Failure::NotSupported);
        assert_eq!(failure(5), Failure::NotConnected);
        assert_eq!(failure(55), Failure::Errno(libc::EBUSY));
    }

    #[test]
    fn plan_starts_stops_and_cleans() {
        let a = uuid::Uuid::from_u128(1);
        let b = uuid::Uuid::from_u128(2);
        let c = uuid::Uuid::from_u128(3);
        let running: BTreeSet<_> = [a, b].into();
        let serving: BTreeSet<_> = [b, c].into();
        let entries = vec![
            a.hyphenated().to_string(),
            c.hyphenated().to_string(),
            "junk".to_string(),
            // Not our spelling of a running domain's UUID: not ours either.
            a.simple().to_string(),
        ];
        let p = plan(&running, &serving, &entries);
        assert_eq!(p.start, vec![a]);
        assert_eq!(p.stop, vec![c]);
        assert_eq!(
            p.remove,
            vec![
                c.hyphenated().to_string(),
                "junk".into(),
                a.simple().to_string()
            ]
        );
        assert_eq!(plan(&running, &running, &[]), Plan::default());
    }
}
