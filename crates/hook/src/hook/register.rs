//! Registration policy over the `Bus` trait: which name, which API, what to leave alone.
//! Every path that could touch a running VM checks first (DESIGN §5 facts 2–4).

use crate::config::{Config, LibvirtMachine};
use crate::machined::{self, Bus, BusError, How, MachineInfo, Registration};
use crate::state::DomainState;

/// What happened, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Registered {
        name: String,
        how: How,
        api: machined::Api,
        replaced: Option<String>,
    },
    AlreadyRegistered(String),
    KeptLibvirt(String),
    /// A machine we do not recognise holds QEMU's PID: left alone.
    ForeignMachine(String),
    NameTaken(String),
}

pub struct Target<'a> {
    pub domain: &'a str,
    pub uuid: uuid::Uuid,
    pub leader: u32,
    /// The systemd unit QEMU runs in (from its cgroup).
    pub unit: Option<String>,
    pub ifindices: Vec<i32>,
    pub vsock_cid: Option<u32>,
    /// The control socket machined should give machinectl (see `machined::Registration`).
    pub control: Option<String>,
}

fn ours(m: &MachineInfo, id: &[u8]) -> bool {
    m.service == machined::SERVICE && m.id == id
}

/// `started` (and `reconnect` when ours is missing): register QEMU as a machine.
/// `st` is updated (and must be saved by the caller) before and after the call via `save`.
pub fn register(
    bus: &dyn Bus,
    cfg: &Config,
    t: &Target,
    st: &mut DomainState,
    save: &mut dyn FnMut(&DomainState),
) -> Result<Outcome, BusError> {
    let id = t.uuid.as_bytes().to_vec();
    let mut how = match &t.unit {
        Some(u) if u.ends_with(".scope") => How::Register,
        _ => How::Create,
    };
    let mut replaced = None;
    let hex = t.uuid.simple().to_string();
    let base = machined::machine_name(t.domain, &hex);
    // Who holds QEMU's PID, and who holds our name: asked together.
    let (by_pid, by_name) = bus.machine_by_pid_and_name(t.leader, &base);
    match by_pid? {
        Some(m) if ours(&m, &id) => {
            st.machine = Some(m.name.clone());
            st.registered = true;
            st.leader = Some(t.leader);
            save(st);
            return Ok(Outcome::AlreadyRegistered(m.name));
        }
        Some(m) if m.service == machined::LIBVIRT_SERVICE => {
            if cfg.machined.libvirt_machine == LibvirtMachine::Keep {
                st.kept_libvirt = Some(m.name.clone());
                save(st);
                return Ok(Outcome::KeptLibvirt(m.name));
            }
            // Take libvirt's place in the same scope: unregistering kills nothing.
            bus.unregister(&m.name)?;
            if let Some(other) = forgotten(bus, &m.name, Some(t.leader))? {
                return Ok(Outcome::ForeignMachine(other));
            }
            st.replaced_libvirt = Some(m.name.clone());
            save(st);
            replaced = Some(m.name);
            how = How::Register;
        }
        Some(m) => return Ok(Outcome::ForeignMachine(m.name)),
        None => {}
    }

    // The answer for `base` is stale only if we just unregistered a machine of that name.
    let mut by_name = Some(by_name).filter(|_| replaced.as_deref() != Some(base.as_str()));
    let mut name = None;
    for candidate in [base.clone(), machined::fallback_name(&base, &hex)] {
        let holder = match by_name.take() {
            Some(answer) => answer?,
            None => bus.machine(&candidate)?,
        };
        match holder {
            None => {
                name = Some(candidate);
                break;
            }
            // Ours from an earlier boot whose stop we missed: machined keeps a machine
            // only while its unit lives, so a different leader means it is stale.
            Some(m) if ours(&m, &id) => {
                if m.leader == t.leader {
                    st.machine = Some(candidate.clone());
                    st.registered = true;
                    save(st);
                    return Ok(Outcome::AlreadyRegistered(candidate));
                }
                bus.unregister(&candidate)?;
                // By name, nothing else can hold it.
                forgotten(bus, &candidate, None)?;
                name = Some(candidate);
                break;
            }
            Some(_) => continue,
        }
    }
    let Some(name) = name else {
        return Ok(Outcome::NameTaken(base));
    };
    st.machine = Some(name.clone());
    st.registered = false;
    st.how = Some(how);
    st.leader = Some(t.leader);
    st.vsock_cid = t.vsock_cid;
    save(st);
    let reg = Registration {
        name: name.clone(),
        id,
        leader: t.leader,
        ifindices: t.ifindices.clone(),
        vsock_cid: t.vsock_cid,
        control: t.control.clone(),
    };
    let mut api = bus.register(&reg, how)?;
    st.registered = true;
    st.api = Some(api);
    save(st);
    if how == How::Create && reg.control.is_some() && bus.takes_control() {
        api = hand_over(bus, &reg, st, save)?;
        how = How::Register;
    }
    Ok(Outcome::Registered {
        name,
        how,
        api,
        replaced,
    })
}

/// QEMU had no scope of its own, so machined made one (with the ordering after libvirtd
/// that only `CreateMachine…` can set) — but a control address is given only by varlink
/// `Register`, which cannot create such a scope. So: unregister (the scope and QEMU stay),
/// and register again in that scope with the control address. Should that fail, the
/// machine comes back without one: never left unregistered.
fn hand_over(
    bus: &dyn Bus,
    reg: &Registration,
    st: &mut DomainState,
    save: &mut dyn FnMut(&DomainState),
) -> Result<machined::Api, BusError> {
    bus.unregister(&reg.name)?;
    st.registered = false;
    save(st);
    if let Some(other) = forgotten(bus, &reg.name, Some(reg.leader))? {
        // Cannot happen short of a race with another registrar: leave theirs alone.
        return Err(BusError::Other {
            method: "RegisterMachine",
            msg: format!("machine {other} took QEMU's PID during the hand-over"),
        });
    }
    st.how = Some(How::Register);
    let api = match bus.register(reg, How::Register) {
        Ok(api) => api,
        Err(e) => {
            tracing::warn!(domain = %reg.name, "control address not registered: {e}");
            let plain = Registration {
                control: None,
                ..reg.clone()
            };
            bus.register(&plain, How::Register)?
        }
    };
    st.registered = true;
    st.api = Some(api);
    save(st);
    Ok(api)
}

/// Return once machined has forgotten the machine `gone` we just unregistered. It drops an
/// unregistered machine at its next garbage collection, after the reply; until then the
/// machine still holds its name, leader and unit, a registration that collides with them
/// fails — and machined then stops the unit it was given, which is the VM's scope (seen in
/// the lab: five domains started at once, two of them killed that way). `leader`: ask by
/// the PID the machine held, else by its name. `Some(name)`: another machine has taken
/// that PID meanwhile. Asks again after short pauses for as long as the event's deadline
/// allows. When the deadline runs out in a lookup after the first, machined has been
/// holding the machine all along: that is the cause reported, not the timeout.
fn forgotten(bus: &dyn Bus, gone: &str, leader: Option<u32>) -> Result<Option<String>, BusError> {
    for attempt in 0.. {
        let holder = match leader {
            Some(pid) => bus.machine_by_pid(pid).map(|m| m.map(|m| m.name)),
            None => bus.machine(gone).map(|m| m.map(|m| m.name)),
        };
        let holder = match holder {
            Err(e) if attempt > 0 && e.is_timeout() => break,
            h => h?,
        };
        match holder {
            None => return Ok(None),
            Some(n) if n != gone => return Ok(Some(n)),
            Some(_) if bus.pause(attempt) => {}
            Some(_) => break,
        }
    }
    Err(BusError::Other {
        method: "UnregisterMachine",
        msg: format!("machined still holds machine {gone} after unregistering it"),
    })
}

/// `stopped`/`release`: unregister what we registered. `Ok(false)` when there was nothing.
pub fn unregister(bus: &dyn Bus, st: &mut DomainState) -> Result<bool, BusError> {
    let Some(name) = st.machine.clone() else {
        return Ok(false);
    };
    // Only a machine that is still ours: the name may have passed to another domain.
    let id = uuid::Uuid::parse_str(&st.uuid)
        .map(|u| u.as_bytes().to_vec())
        .unwrap_or_default();
    let gone = match bus.machine(&name)? {
        Some(m) if ours(&m, &id) => bus.unregister(&name)?,
        _ => false,
    };
    st.registered = false;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    //! Policy tables over a scripted bus; the real machined paths run in the lab tests.
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Script {
        machines: RefCell<Vec<MachineInfo>>,
        calls: RefCell<Vec<String>>,
        /// `machine(name)` fails (a bus error).
        name_fails: bool,
        /// `machine_by_pid` answers this many times, then runs into the deadline.
        pid_answers: Option<u32>,
        /// As machined: an unregistered machine stays (holding its name and leader) until
        /// garbage collection, here after this many pauses.
        gc_lag: u32,
        limbo: RefCell<Vec<(MachineInfo, u32)>>,
        /// machined takes control addresses (systemd ≥ 261).
        control: bool,
    }

    impl Script {
        /// Registered machines and those awaiting collection.
        fn known(&self) -> Vec<MachineInfo> {
            let limbo = self.limbo.borrow();
            let m = self.machines.borrow();
            m.iter()
                .cloned()
                .chain(limbo.iter().map(|l| l.0.clone()))
                .collect()
        }
    }

    impl Bus for Script {
        fn machine_by_pid(&self, pid: u32) -> Result<Option<MachineInfo>, BusError> {
            self.calls.borrow_mut().push(format!("by_pid {pid}"));
            let asked = self
                .calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("by_pid"))
                .count();
            if self.pid_answers.is_some_and(|n| asked > n as usize) {
                return Err(BusError::Timeout {
                    method: "GetMachineByPID",
                    ms: 300,
                });
            }
            Ok(self.known().into_iter().find(|m| m.leader == pid))
        }
        fn machine(&self, name: &str) -> Result<Option<MachineInfo>, BusError> {
            self.calls.borrow_mut().push(format!("machine {name}"));
            if self.name_fails {
                return Err(BusError::Other {
                    method: "GetMachine",
                    msg: "bus gone".into(),
                });
            }
            Ok(self.known().into_iter().find(|m| m.name == name))
        }
        /// Time runs out after 100 pauses.
        fn pause(&self, attempt: u32) -> bool {
            self.calls.borrow_mut().push("pause".into());
            let mut limbo = self.limbo.borrow_mut();
            limbo.iter_mut().for_each(|l| l.1 -= 1);
            limbo.retain(|l| l.1 > 0);
            attempt < 100
        }
        fn register(&self, r: &Registration, how: How) -> Result<machined::Api, BusError> {
            self.calls.borrow_mut().push(format!(
                "register {} {how:?}{}",
                r.name,
                if r.control.is_some() { " +control" } else { "" }
            ));
            // machined refuses a name or leader it still holds (and stops the unit).
            if self
                .known()
                .iter()
                .any(|m| m.name == r.name || m.leader == r.leader)
            {
                return Err(BusError::Method {
                    method: "RegisterMachineWithNetwork",
                    name: "org.freedesktop.DBus.Error.FileExists".into(),
                    msg: "File exists".into(),
                });
            }
            self.machines.borrow_mut().push(MachineInfo {
                name: r.name.clone(),
                id: r.id.clone(),
                service: machined::SERVICE.into(),
                class: "vm".into(),
                leader: r.leader,
                unit: String::new(),
            });
            Ok(machined::Api::WithNetwork)
        }
        fn takes_control(&self) -> bool {
            self.control
        }
        fn unregister(&self, name: &str) -> Result<bool, BusError> {
            self.calls.borrow_mut().push(format!("unregister {name}"));
            let mut m = self.machines.borrow_mut();
            let Some(i) = m.iter().position(|x| x.name == name) else {
                return Ok(false);
            };
            let gone = m.remove(i);
            if self.gc_lag > 0 {
                self.limbo.borrow_mut().push((gone, self.gc_lag));
            }
            Ok(true)
        }
    }

    fn machine(name: &str, id: &[u8], service: &str, leader: u32) -> MachineInfo {
        MachineInfo {
            name: name.into(),
            id: id.to_vec(),
            service: service.into(),
            class: "vm".into(),
            leader,
            unit: String::new(),
        }
    }

    const U: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    /// QEMU (PID 100) registered by libvirt; unregistered machines linger `gc_lag` pauses.
    fn libvirt_registered(gc_lag: u32) -> Script {
        let bus = Script {
            gc_lag,
            ..Default::default()
        };
        bus.machines.borrow_mut().push(machine(
            "qemu-1-web_01",
            &[1; 16],
            machined::LIBVIRT_SERVICE,
            100,
        ));
        bus
    }

    fn run(bus: &Script, cfg: &Config, unit: &str) -> (Outcome, DomainState) {
        try_run(bus, cfg, unit).unwrap()
    }

    fn try_run(bus: &Script, cfg: &Config, unit: &str) -> Result<(Outcome, DomainState), BusError> {
        try_run_with(bus, cfg, unit, None)
    }

    fn try_run_with(
        bus: &Script,
        cfg: &Config,
        unit: &str,
        control: Option<&str>,
    ) -> Result<(Outcome, DomainState), BusError> {
        let t = Target {
            domain: "web_01",
            uuid: uuid::Uuid::parse_str(U).unwrap(),
            leader: 100,
            unit: Some(unit.into()),
            ifindices: vec![7],
            vsock_cid: None,
            control: control.map(str::to_string),
        };
        let mut st = DomainState {
            uuid: U.into(),
            ..Default::default()
        };
        let o = register(bus, cfg, &t, &mut st, &mut |_| {})?;
        Ok((o, st))
    }

    #[test]
    fn fresh_in_service_creates_scope() {
        let bus = Script::default();
        let (o, st) = run(&bus, &Config::default(), "libvirtd.service");
        assert!(matches!(
            o,
            Outcome::Registered {
                how: How::Create,
                ..
            }
        ));
        assert_eq!(st.machine.as_deref(), Some("web-01"));
        assert!(st.registered);
        assert_eq!(bus.calls.borrow().last().unwrap(), "register web-01 Create");
    }

    #[test]
    fn created_scope_is_handed_to_a_registration_with_control_address() {
        let bus = Script {
            control: true,
            gc_lag: 2,
            ..Default::default()
        };
        let (o, st) = try_run_with(
            &bus,
            &Config::default(),
            "libvirtd.service",
            Some("/run/c/x"),
        )
        .unwrap();
        assert!(matches!(o, Outcome::Registered { .. }), "{o:?}");
        assert_eq!(
            *bus.calls.borrow(),
            vec![
                "by_pid 100",
                "machine web-01",
                "register web-01 Create +control",
                "unregister web-01",
                "by_pid 100",
                "pause",
                "by_pid 100",
                "pause",
                "by_pid 100",
                "register web-01 Register +control"
            ]
        );
        assert!(st.registered);
        assert_eq!(st.how, Some(How::Register));
        // A machined without control addresses: the created scope stays as it is.
        let bus = Script::default();
        try_run_with(
            &bus,
            &Config::default(),
            "libvirtd.service",
            Some("/run/c/x"),
        )
        .unwrap();
        assert_eq!(
            bus.calls.borrow().last().unwrap(),
            "register web-01 Create +control"
        );
    }

    #[test]
    fn replaces_libvirt_machine_in_its_scope() {
        let bus = libvirt_registered(0);
        let (o, st) = run(&bus, &Config::default(), "machine-qemu\\x2d1.scope");
        assert_eq!(st.replaced_libvirt.as_deref(), Some("qemu-1-web_01"));
        assert!(matches!(
            o,
            Outcome::Registered {
                how: How::Register,
                ..
            }
        ));
        assert_eq!(
            *bus.calls.borrow(),
            vec![
                "by_pid 100",
                "machine web-01",
                "unregister qemu-1-web_01",
                "by_pid 100",
                "register web-01 Register"
            ]
        );
    }

    #[test]
    fn keeps_libvirt_machine_when_configured() {
        let bus = libvirt_registered(0);
        let mut cfg = Config::default();
        cfg.machined.libvirt_machine = LibvirtMachine::Keep;
        let (o, _) = run(&bus, &cfg, "machine-qemu\\x2d1.scope");
        assert_eq!(o, Outcome::KeptLibvirt("qemu-1-web_01".into()));
        assert_eq!(*bus.calls.borrow(), vec!["by_pid 100", "machine web-01"]);
    }

    #[test]
    fn foreign_machine_on_pid_is_left_alone() {
        let bus = Script::default();
        bus.machines
            .borrow_mut()
            .push(machine("ct", &[], "nspawn", 100));
        let (o, _) = run(&bus, &Config::default(), "x.scope");
        assert_eq!(o, Outcome::ForeignMachine("ct".into()));
        assert_eq!(*bus.calls.borrow(), vec!["by_pid 100", "machine web-01"]);
    }

    #[test]
    fn taken_name_falls_back_then_gives_up() {
        let bus = Script::default();
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &[2; 16], "other", 5));
        let (o, st) = run(&bus, &Config::default(), "x.scope");
        assert!(matches!(o, Outcome::Registered { .. }));
        assert_eq!(st.machine.as_deref(), Some("web-01-0f1e2d3c"));
        let bus = Script::default();
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &[2; 16], "other", 5));
        bus.machines
            .borrow_mut()
            .push(machine("web-01-0f1e2d3c", &[2; 16], "other", 6));
        let (o, _) = run(&bus, &Config::default(), "x.scope");
        assert_eq!(o, Outcome::NameTaken("web-01".into()));
    }

    #[test]
    fn stale_own_registration_is_replaced() {
        let id = uuid::Uuid::parse_str(U).unwrap().as_bytes().to_vec();
        let bus = Script::default();
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &id, machined::SERVICE, 55));
        let (o, _) = run(&bus, &Config::default(), "x.scope");
        assert!(matches!(o, Outcome::Registered { .. }));
        assert!(bus
            .calls
            .borrow()
            .contains(&"unregister web-01".to_string()));
    }

    #[test]
    fn name_answer_matters_only_when_needed() {
        // QEMU already has our machine: a failed name lookup (asked together) is moot.
        let id = uuid::Uuid::parse_str(U).unwrap().as_bytes().to_vec();
        let bus = Script {
            name_fails: true,
            ..Default::default()
        };
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &id, machined::SERVICE, 100));
        let (o, _) = run(&bus, &Config::default(), "x.scope");
        assert_eq!(o, Outcome::AlreadyRegistered("web-01".into()));
        // No machine for QEMU: the name's answer decides, and its error is the result.
        let bus = Script {
            name_fails: true,
            ..Default::default()
        };
        assert!(try_run(&bus, &Config::default(), "x.scope").is_err());
        assert!(!bus.calls.borrow().iter().any(|c| c.starts_with("register")));
    }

    #[test]
    fn name_asked_again_after_unregistering_that_name() {
        // libvirt's machine carries the very name we want: after unregistering it, the
        // earlier "taken" answer is stale and the name is asked again.
        let bus = Script::default();
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &[1; 16], machined::LIBVIRT_SERVICE, 100));
        let (o, st) = run(&bus, &Config::default(), "machine-qemu\\x2d1.scope");
        assert!(matches!(o, Outcome::Registered { .. }), "{o:?}");
        assert_eq!(st.machine.as_deref(), Some("web-01"));
        assert_eq!(
            *bus.calls.borrow(),
            vec![
                "by_pid 100",
                "machine web-01",
                "unregister web-01",
                "by_pid 100",
                "machine web-01",
                "register web-01 Register"
            ]
        );
    }

    #[test]
    fn registers_only_once_machined_has_forgotten_what_was_unregistered() {
        // libvirt's machine, unregistered, lingers for two pauses: registering before it
        // is gone would fail and cost the VM its scope.
        let bus = libvirt_registered(2);
        let (o, _) = run(&bus, &Config::default(), "machine-qemu\\x2d1.scope");
        assert!(matches!(o, Outcome::Registered { .. }), "{o:?}");
        assert_eq!(
            *bus.calls.borrow(),
            vec![
                "by_pid 100",
                "machine web-01",
                "unregister qemu-1-web_01",
                "by_pid 100",
                "pause",
                "by_pid 100",
                "pause",
                "by_pid 100",
                "register web-01 Register"
            ]
        );
        // Our own stale machine (another leader) is waited for by name.
        let id = uuid::Uuid::parse_str(U).unwrap().as_bytes().to_vec();
        let bus = Script {
            gc_lag: 1,
            ..Default::default()
        };
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &id, machined::SERVICE, 55));
        let (o, _) = run(&bus, &Config::default(), "x.scope");
        assert!(matches!(o, Outcome::Registered { .. }), "{o:?}");
        let calls = bus.calls.borrow();
        assert_eq!(
            calls[2..],
            [
                "unregister web-01",
                "machine web-01",
                "pause",
                "machine web-01",
                "register web-01 Register"
            ]
        );
    }

    #[test]
    fn gives_up_when_machined_never_forgets() {
        let bus = libvirt_registered(u32::MAX);
        let e = try_run(&bus, &Config::default(), "machine-qemu\\x2d1.scope").unwrap_err();
        assert!(
            e.to_string().contains("still holds machine qemu-1-web_01"),
            "{e}"
        );
        assert!(!bus.calls.borrow().iter().any(|c| c.starts_with("register")));
    }

    #[test]
    fn deadline_while_machined_still_holds_it_names_the_holding() {
        // The deadline runs out in the third lookup after unregistering (the second and
        // third asked again): machined held the machine all along, and that is the cause.
        let bus = Script {
            pid_answers: Some(3),
            ..libvirt_registered(u32::MAX)
        };
        let e = try_run(&bus, &Config::default(), "machine-qemu\\x2d1.scope").unwrap_err();
        assert!(!e.is_timeout(), "{e}");
        assert!(
            e.to_string().contains("still holds machine qemu-1-web_01"),
            "{e}"
        );
        assert!(!bus.calls.borrow().iter().any(|c| c.starts_with("register")));
        // In the first lookup after unregistering nothing is known yet: the timeout it is.
        let bus = Script {
            pid_answers: Some(1),
            ..libvirt_registered(u32::MAX)
        };
        let e = try_run(&bus, &Config::default(), "machine-qemu\\x2d1.scope").unwrap_err();
        assert!(e.is_timeout(), "{e}");
        assert!(!bus.calls.borrow().iter().any(|c| c.starts_with("register")));
    }

    #[test]
    fn unregister_only_our_own() {
        let bus = Script::default();
        bus.machines
            .borrow_mut()
            .push(machine("web-01", &[9; 16], "other", 5));
        let mut st = DomainState {
            uuid: U.into(),
            machine: Some("web-01".into()),
            registered: true,
            ..Default::default()
        };
        assert!(!unregister(&bus, &mut st).unwrap());
        assert_eq!(
            bus.machines.borrow().len(),
            1,
            "someone else's machine kept"
        );
    }
}
