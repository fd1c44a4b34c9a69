//! What `machinectl`'s verbs do to a libvirt VM registered with systemd-machined, and what
//! to use instead (issue 13). Without a control socket for the machine (systemd < 261, or
//! no service serving one: virt-systemd does not yet), machined acts on QEMU itself:
//! signals or stops its unit. QEMU quits, and libvirt records a crash or a shutdown the
//! guest never saw. Measured in the lab (tests/admin_lab.rs asserts it on every run):
//!
//! | verb | machined | libvirt afterwards (systemd 252, 257) |
//! |---|---|---|
//! | `poweroff` | `KillMachine(leader, SIGRTMIN+4)` | shut off (crashed) |
//! | `reboot` | `KillMachine(leader, SIGINT)` | shut off (shutdown); not started again |
//! | `terminate` | `TerminateMachine`: stops the leader's unit | shut off |
//! | `kill` | `KillMachine(all, SIGTERM)` | shut off |
//!
//! `pause`/`resume` (systemd ≥ 262) need a control socket and are refused without one.
//! From systemd 261 the hook registers a control address and `virt-systemd control-service`
//! serves it: the verbs then go through libvirt (`kill` stays a signal).

use serde::Serialize;

/// One machinectl verb that harms a libvirt VM, what it does, and the safe command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Harmful {
    pub verb: &'static str,
    pub effect: &'static str,
    pub instead: &'static str,
}

/// The verbs that end a VM registered without a control socket.
pub const HARMFUL: [Harmful; 4] = [
    Harmful {
        verb: "poweroff",
        effect: "kills QEMU (SIGRTMIN+4): no guest shutdown, libvirt records a crash",
        instead: "virsh shutdown",
    },
    Harmful {
        verb: "reboot",
        effect: "QEMU quits (SIGINT): the VM is shut off, not rebooted",
        instead: "virsh reboot",
    },
    Harmful {
        verb: "terminate",
        effect: "stops QEMU's unit (SIGTERM): no guest shutdown",
        instead: "virsh shutdown, or virsh destroy",
    },
    Harmful {
        verb: "kill",
        effect: "signals QEMU (SIGTERM by default): no guest shutdown",
        instead: "virsh shutdown, or virsh destroy",
    },
];

/// How machinectl reaches a domain: not at all (no machine), through its control socket
/// (`"control"`: registered with a control address, systemd ≥ 261; the verbs go through
/// libvirt), or only through machined's signals (`"signals"`: the verbs above end it).
pub fn reach(registered: bool, control: bool) -> Option<&'static str> {
    match (registered, control) {
        (false, _) => None,
        (true, true) => Some("control"),
        (true, false) => Some("signals"),
    }
}

/// The verbs that go through a control socket (systemd ≥ 261).
pub const CONTROLLED: &str = "poweroff|reboot|terminate|pause|resume";

/// The first systemd whose machined takes a control address.
pub const CONTROL_SYSTEMD: u32 = 261;

/// `poweroff|reboot|terminate|kill`.
pub fn verbs() -> String {
    HARMFUL.map(|h| h.verb).join("|")
}

/// One line for people: which verbs harm, what to use instead.
pub fn advice() -> String {
    let instead: Vec<String> = HARMFUL
        .iter()
        .map(|h| format!("{} → {}", h.verb, h.instead))
        .collect();
    format!(
        "machinectl {} end libvirt VMs without a guest shutdown (no control socket): use virsh \
         instead ({})",
        verbs(),
        instead.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_every_verb_and_its_replacement() {
        let a = advice();
        for h in HARMFUL {
            assert!(a.contains(&format!("{} → {}", h.verb, h.instead)), "{a}");
        }
        assert!(
            a.starts_with("machinectl poweroff|reboot|terminate|kill "),
            "{a}"
        );
        assert_eq!(reach(true, false), Some("signals"));
        assert_eq!(reach(true, true), Some("control"));
        assert_eq!(reach(false, true), None);
    }
}
