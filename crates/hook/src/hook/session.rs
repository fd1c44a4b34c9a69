//! Session domains (qemu:///session). libvirt's per-user daemon runs this hook as that user,
//! with neither `XDG_RUNTIME_DIR` nor a bus address in its environment (DESIGN §9): the
//! user's runtime directory is derived from the UID. The user's own systemd-machined
//! (systemd ≥ 259) takes the VM over varlink; state and QEMU's pid file live in that runtime
//! directory, never in root's. Where there is no user machined, one line says so.

use super::Paths;
use crate::config::{Config, Control};
use crate::logging::{MSG_FAILED, MSG_REGISTERED, MSG_SKIPPED, MSG_UNREGISTERED};
use crate::machined::{self, SERVICE};
use crate::machined_varlink::{self as vl, CallError};
use crate::state::{DomainState, Store};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use virt_systemd_core::domain::{DomainXml, Facts};
use virt_systemd_core::metadata::Record;
use virt_systemd_core::scope;

/// Where a session user's things are.
pub struct UserRuntime {
    pub dir: PathBuf,
}

impl UserRuntime {
    /// `/run/user/UID`: libvirt passes no `XDG_RUNTIME_DIR` to hooks.
    pub fn of(paths: &Paths) -> UserRuntime {
        UserRuntime {
            dir: paths
                .user_runtime
                .clone()
                .unwrap_or_else(|| scope::user_runtime(paths.uid)),
        }
    }
    /// The user's machined (varlink).
    pub fn machined(&self) -> PathBuf {
        self.dir.join(scope::USER_MACHINED)
    }
    /// QEMU's pid file, as the session daemon writes it.
    pub fn pid_file(&self, domain: &str) -> PathBuf {
        self.dir.join(format!("libvirt/qemu/run/{domain}.pid"))
    }
    /// Our state for the user's domains.
    pub fn state_dir(&self) -> PathBuf {
        scope::state_dir(&self.dir)
    }
    /// The user's control service: where it serves the sockets, and how it says it runs.
    pub fn control(&self) -> Control {
        Control {
            socket_dir: scope::control_dir(&self.dir),
        }
    }
}

/// One session hook event after the domain XML was read.
pub fn run(
    op: &str,
    xml: &DomainXml,
    facts: &Facts,
    uuid: uuid::Uuid,
    cfg: &Config,
    paths: &Paths,
) {
    let record = crate::metadata::read(xml).ok().flatten();
    let record = record.as_ref();
    let rt = UserRuntime::of(paths);
    let store = Store::new(&rt.state_dir());
    let deadline = Instant::now() + Duration::from_millis(cfg.machined.timeout_ms.max(1));
    match op {
        // A new boot: readiness from the previous one no longer holds.
        "start" => {
            let _ = store.clear_readiness(&uuid.hyphenated().to_string());
        }
        "started" | "reconnect" => {
            super::restore_readiness(xml, &store, uuid, op);
            register(op, facts, record, uuid, &rt, &store, paths, deadline)
        }
        "stopped" | "release" => unregister(op, facts, uuid, &rt, &store, deadline),
        _ => {}
    }
}

/// machined could not make the scope: one of that name exists (EEXIST).
fn scope_exists(e: &CallError) -> bool {
    matches!(e, CallError::Reply { name, parameters }
        if name == "io.systemd.System" && parameters.contains("\"EEXIST\""))
}

/// The hybrid-vsock socket of a domain on the user unit's backend
/// (`virt-systemd-vsock@.service`: `vhost.sock` and `vm.vsock` side by side), for
/// systemd's `vsock-mux/PATH` SSH address.
fn backend_uds(record: Option<&Record>) -> Option<PathBuf> {
    let sock = PathBuf::from(record?.vhost_user_vsock.as_deref()?);
    let dir = sock.parent()?;
    (sock == scope::backend_vhost_socket(dir)).then(|| scope::backend_uds(dir))
}

#[allow(clippy::too_many_arguments)]
fn register(
    op: &str,
    facts: &Facts,
    record: Option<&Record>,
    uuid: uuid::Uuid,
    rt: &UserRuntime,
    store: &Store,
    paths: &Paths,
    deadline: Instant,
) {
    let name = &facts.name;
    let socket = rt.machined();
    if !socket.exists() {
        if op == "started" {
            info!(domain = %name, op, uid = paths.uid, message_id = MSG_SKIPPED,
                  "session domain: not registered: no per-user systemd-machined at {} (systemd 259+, a running user manager and dbus-user-session)",
                  socket.display());
        }
        return;
    }
    let pid_file = rt.pid_file(name);
    let Some(leader) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        warn!(domain = %name, op, message_id = MSG_FAILED,
              "no QEMU pid in {}; not registered", pid_file.display());
        return;
    };
    let hex = uuid.simple().to_string();
    let machine = machined::machine_name(name, &hex);
    let pidfd = rustix::process::Pid::from_raw(leader as i32)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let cid = facts.vsock.as_ref().and_then(|v| v.cid);
    let reg = vl::Register {
        // The session daemon's QEMU is no unit of its own: the user manager makes it a scope
        // (which needs QEMU inside user@UID.service, i.e. libvirtd run as a user service).
        allocate_unit: true,
        ..vl::Register::vm(&machine, hex.clone(), leader, pidfd.as_ref(), cid)
    };
    let reg = match backend_uds(record) {
        Some(uds) => vl::Register {
            ssh_address: Some(format!("vsock-mux{}", uds.display())),
            ..reg
        },
        None => reg,
    };
    // The user's control service (its PID file is there while it runs) serves this
    // domain's socket: machinectl --user poweroff/reboot/pause then go through libvirt.
    let ctl = rt.control();
    let control = ctl
        .pid_file()
        .exists()
        .then(|| ctl.socket(&uuid))
        .filter(|_| vl::takes_control_address(&socket, deadline).unwrap_or(false))
        .map(|p| p.display().to_string());
    let reg = vl::Register {
        control_address: control.as_deref(),
        ..reg
    };
    let mut st = DomainState {
        domain: name.clone(),
        uuid: uuid.hyphenated().to_string(),
        machine: Some(machine.clone()),
        leader: Some(leader),
        vsock_cid: cid,
        enabled: record.is_some(),
        notify_port: record.and_then(|r| r.notify),
        ..Default::default()
    };
    let mut res = vl::register(&socket, &reg, deadline);
    if res.as_ref().err().is_some_and(scope_exists) {
        // QEMU sits in the scope a registration made earlier (the machine was unregistered,
        // the scope lives on): register it with that scope instead of making another.
        res = vl::register(
            &socket,
            &vl::Register {
                allocate_unit: false,
                ..reg
            },
            deadline,
        );
    }
    match res {
        Ok(()) => {
            st.registered = true;
            info!(domain = %name, uuid = %st.uuid, machine = %machine, op, leader,
                  message_id = MSG_REGISTERED,
                  "registered machine {machine} with the user's machined (uid {})", paths.uid);
        }
        Err(CallError::Reply { name: e, .. }) if e == "io.systemd.Machine.MachineExists" => {
            // reconnect, or a start whose stop we missed: machined keeps a machine only
            // while its scope lives, so it is this QEMU's.
            st.registered = true;
        }
        Err(e) => {
            warn!(domain = %name, op, message_id = MSG_FAILED,
                  "not registered with the user's machined: {}; VM left alone", describe(&e));
            return;
        }
    }
    if let Err(e) = store.save(&st) {
        warn!(domain = %name, op, "cannot record state in {}: {e}", rt.state_dir().display());
    }
}

fn unregister(
    op: &str,
    facts: &Facts,
    uuid: uuid::Uuid,
    rt: &UserRuntime,
    store: &Store,
    deadline: Instant,
) {
    let u = uuid.hyphenated().to_string();
    let Ok(Some(st)) = store.load(&u) else {
        return;
    };
    if let (true, Some(machine)) = (st.registered, st.machine.as_deref()) {
        // Only while the name is still ours (it may have passed to another VM meanwhile);
        // usually the machine went already with QEMU's scope.
        let ours = vl::call(
            &rt.machined(),
            "io.systemd.Machine.List",
            &serde_json::json!({ "name": machine }),
            deadline,
        )
        .is_ok_and(|m| m["service"] == SERVICE && m["id"] == uuid.simple().to_string().as_str());
        if !ours {
            let _ = store.remove(&u);
            return;
        }
        match vl::call(
            &rt.machined(),
            "io.systemd.Machine.Unregister",
            &serde_json::json!({ "name": machine }),
            deadline,
        ) {
            Ok(_) => info!(domain = %facts.name, uuid = %u, machine, op,
                           message_id = MSG_UNREGISTERED, "unregistered from the user's machined"),
            Err(CallError::Reply { name, .. }) if name == "io.systemd.Machine.NoSuchMachine" => {}
            Err(CallError::Absent(_)) => {}
            Err(e) => warn!(domain = %facts.name, op, message_id = MSG_FAILED,
                            "unregister from the user's machined failed: {}", describe(&e)),
        }
    }
    if let Err(e) = store.remove(&u) {
        warn!(domain = %facts.name, op, "cannot update state: {e}");
    }
}

fn describe(e: &CallError) -> String {
    match e {
        CallError::Absent(m) | CallError::Io(m) => m.clone(),
        CallError::Timeout => "timed out".into(),
        CallError::Reply { name, parameters } => format!("{name} {parameters}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eexist_means_the_scope_is_there() {
        let r = |name: &str, p: &str| CallError::Reply {
            name: name.into(),
            parameters: p.into(),
        };
        assert!(scope_exists(&r(
            "io.systemd.System",
            r#"{"errno":17,"errnoName":"EEXIST","origin":"linux"}"#
        )));
        assert!(!scope_exists(&r(
            "io.systemd.System",
            r#"{"errno":6,"errnoName":"ENXIO"}"#
        )));
        assert!(!scope_exists(&r("io.systemd.Machine.MachineExists", "{}")));
    }

    #[test]
    fn backend_uds_only_for_the_user_units_layout() {
        let rec = |s: &str| Record {
            vhost_user_vsock: Some(s.into()),
            ..Record::default()
        };
        assert_eq!(
            backend_uds(Some(&rec("/run/user/5/virt-systemd/vsock/vm/vhost.sock"))),
            Some(PathBuf::from("/run/user/5/virt-systemd/vsock/vm/vm.vsock"))
        );
        assert_eq!(backend_uds(Some(&rec("/srv/other.sock"))), None);
        assert_eq!(backend_uds(None), None);
    }
}
