//! systemd-machined: machine names, the registration request, and the D-Bus adapter.
//!
//! Capability, not version: `RegisterMachineEx`/`CreateMachineEx` (systemd ≥ 259) first,
//! `…WithNetwork` on `UnknownMethod`. Never `TerminateMachine` (it stops the unit, which can
//! be libvirtd itself); `UnregisterMachine` kills nothing.

use std::time::Duration;

pub const SERVICE: &str = "virt-systemd";
pub const LIBVIRT_SERVICE: &str = "libvirt-qemu";
const DEST: &str = "org.freedesktop.machine1";
const PATH: &str = "/org/freedesktop/machine1";
const MANAGER: &str = "org.freedesktop.machine1.Manager";
const MACHINE: &str = "org.freedesktop.machine1.Machine";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot reach the system bus: {0}")]
    Connect(String),
    #[error("{method}: {name}: {msg}")]
    Method {
        method: &'static str,
        name: String,
        msg: String,
    },
    #[error("{method}: {msg}")]
    Other { method: &'static str, msg: String },
}

impl BusError {
    pub fn is(&self, error_name: &str) -> bool {
        matches!(self, BusError::Method { name, .. } if name == error_name)
    }
}

pub type BusResult<T> = Result<T, BusError>;

/// A machine as machined shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub name: String,
    pub id: Vec<u8>,
    pub service: String,
    pub class: String,
    pub leader: u32,
    pub unit: String,
}

/// What we ask machined for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    /// 16 bytes (the domain UUID).
    pub id: Vec<u8>,
    pub leader: u32,
    pub ifindices: Vec<i32>,
    pub vsock_cid: Option<u32>,
}

/// How QEMU gets its machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// QEMU already has its own scope: register it as the machine's unit.
    Register,
    /// QEMU sits inside libvirtd/virtqemud's service: machined creates a scope for it.
    Create,
}

/// Which API machined answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Api {
    Ex,
    WithNetwork,
}

/// The operations the hook needs; the zbus adapter implements it, tests may inject faults.
pub trait Bus {
    fn machine_by_pid(&self, pid: u32) -> BusResult<Option<MachineInfo>>;
    fn machine(&self, name: &str) -> BusResult<Option<MachineInfo>>;
    fn register(&self, r: &Registration, how: How) -> BusResult<Api>;
    /// `Ok(false)`: there was no such machine.
    fn unregister(&self, name: &str) -> BusResult<bool>;
}

/// Machine name for a domain: machined's `hostname_is_valid` rules (LDH labels separated by
/// single dots, at most 64 characters). Invalid characters (`_`, spaces, …) become `-`;
/// a name longer than 64 is cut to 55 and suffixed with `-` and 8 hex digits of the UUID,
/// so distinct long names stay distinct.
pub fn machine_name(domain: &str, uuid_hex: &str) -> String {
    let labels: Vec<String> = domain
        .split('.')
        .map(|l| {
            let s: String = l
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            s.trim_matches('-').to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let name = labels.join(".");
    let short = &uuid_hex[..uuid_hex.len().min(8)];
    if name.is_empty() {
        return format!("vm-{short}");
    }
    if name.len() <= 64 {
        return name;
    }
    with_suffix(&name, short)
}

/// Fallback when the name is held by a machine with another ID: `NAME-XXXXXXXX`.
pub fn fallback_name(name: &str, uuid_hex: &str) -> String {
    with_suffix(name, &uuid_hex[..uuid_hex.len().min(8)])
}

fn with_suffix(name: &str, suffix: &str) -> String {
    let room = 64 - suffix.len() - 1;
    let mut head = &name[..name.len().min(room)];
    head = head.trim_end_matches(['-', '.']);
    format!("{head}-{suffix}")
}

/// The systemd unit a process's cgroup belongs to (last `.scope`/`.service` component of
/// its cgroup path), from `/proc/PID/cgroup` text.
pub fn unit_of_cgroup(cgroup: &str) -> Option<String> {
    // Unified hierarchy first; hybrid hosts track units in name=systemd.
    let unit = |line: &str| {
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/')
            .rev()
            .find(|c| c.ends_with(".scope") || c.ends_with(".service"))
            .map(str::to_string)
    };
    let lines = || cgroup.lines();
    lines()
        .filter(|l| l.starts_with("0::"))
        .find_map(unit)
        .or_else(|| {
            lines()
                .filter(|l| l.contains(":name=systemd:"))
                .find_map(unit)
        })
}

/// The zbus adapter on the system bus (or `DBUS_SYSTEM_BUS_ADDRESS`).
pub struct Machined {
    conn: zbus::blocking::Connection,
}

fn other(method: &'static str) -> impl Fn(zbus::Error) -> BusError {
    move |e| match e {
        zbus::Error::MethodError(name, msg, _) => BusError::Method {
            method,
            name: name.to_string(),
            msg: msg.unwrap_or_default(),
        },
        e => BusError::Other {
            method,
            msg: e.to_string(),
        },
    }
}

impl Machined {
    pub fn connect(timeout: Duration) -> BusResult<Machined> {
        let b = match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
            Ok(a) => zbus::blocking::connection::Builder::address(a.as_str()),
            Err(_) => zbus::blocking::connection::Builder::system(),
        }
        .map_err(|e| BusError::Connect(e.to_string()))?;
        let conn = b
            .method_timeout(timeout)
            .build()
            .map_err(|e| BusError::Connect(e.to_string()))?;
        Ok(Machined { conn })
    }

    fn manager(&self) -> BusResult<zbus::blocking::Proxy<'_>> {
        zbus::blocking::Proxy::new(&self.conn, DEST, PATH, MANAGER).map_err(other("proxy"))
    }

    fn info(&self, path: zbus::zvariant::OwnedObjectPath) -> BusResult<MachineInfo> {
        let p =
            zbus::blocking::Proxy::new(&self.conn, DEST, path, MACHINE).map_err(other("proxy"))?;
        let get = other("Get");
        Ok(MachineInfo {
            name: p.get_property("Name").map_err(&get)?,
            id: p.get_property("Id").map_err(&get)?,
            service: p.get_property("Service").map_err(&get)?,
            class: p.get_property("Class").map_err(&get)?,
            leader: p.get_property("Leader").map_err(&get)?,
            unit: p.get_property("Unit").map_err(&get)?,
        })
    }

    fn lookup<B>(
        &self,
        method: &'static str,
        body: &B,
        none: &str,
    ) -> BusResult<Option<MachineInfo>>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        match self
            .manager()?
            .call::<_, _, zbus::zvariant::OwnedObjectPath>(method, body)
        {
            Ok(path) => self.info(path).map(Some),
            Err(e) => {
                let e = other(method)(e);
                if e.is(none) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }
}

const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
pub const NO_SUCH_MACHINE: &str = "org.freedesktop.machine1.NoSuchMachine";
pub const NO_MACHINE_FOR_PID: &str = "org.freedesktop.machine1.NoMachineForPID";

impl Bus for Machined {
    fn machine_by_pid(&self, pid: u32) -> BusResult<Option<MachineInfo>> {
        self.lookup("GetMachineByPID", &(pid,), NO_MACHINE_FOR_PID)
    }

    fn machine(&self, name: &str) -> BusResult<Option<MachineInfo>> {
        self.lookup("GetMachine", &(name,), NO_SUCH_MACHINE)
    }

    fn register(&self, r: &Registration, how: How) -> BusResult<Api> {
        use zbus::zvariant::{Fd, Value};
        let m = self.manager()?;
        let scope: Vec<(&str, Value)> = vec![
            ("Slice", Value::from("machine.slice")),
            (
                "After",
                Value::from(vec!["libvirtd.service", "virtqemud.service"]),
            ),
            ("Before", Value::from(vec!["virt-guest-shutdown.target"])),
            (
                "Description",
                Value::from(format!("Virtual machine {}", r.name)),
            ),
        ];
        // Ex: the leader is pinned by a pidfd, so a recycled PID cannot be registered.
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(r.leader as i32).ok_or_else(|| BusError::Other {
                method: "pidfd_open",
                msg: "invalid PID".into(),
            })?,
            rustix::process::PidfdFlags::empty(),
        );
        if let Ok(fd) = &pidfd {
            let mut props: Vec<(&str, Value)> = vec![
                ("Id", Value::from(r.id.clone())),
                ("Service", Value::from(SERVICE)),
                ("Class", Value::from("vm")),
                ("LeaderPIDFD", Value::from(Fd::from(fd))),
                ("NetworkInterfaces", Value::from(r.ifindices.clone())),
            ];
            if let Some(cid) = r.vsock_cid {
                props.push(("VSockCID", Value::from(cid)));
                props.push(("SSHAddress", Value::from(format!("vsock/{cid}"))));
            }
            let res = match how {
                How::Register => m
                    .call::<_, _, zbus::zvariant::OwnedObjectPath>(
                        "RegisterMachineEx",
                        &(r.name.as_str(), props),
                    )
                    .map_err(other("RegisterMachineEx")),
                How::Create => m
                    .call::<_, _, zbus::zvariant::OwnedObjectPath>(
                        "CreateMachineEx",
                        &(r.name.as_str(), props, scope.clone()),
                    )
                    .map_err(other("CreateMachineEx")),
            };
            match res {
                Ok(_) => return Ok(Api::Ex),
                Err(e) if e.is(UNKNOWN_METHOD) => {}
                Err(e) => return Err(e),
            }
        }
        match how {
            How::Register => m
                .call::<_, _, zbus::zvariant::OwnedObjectPath>(
                    "RegisterMachineWithNetwork",
                    &(
                        r.name.as_str(),
                        r.id.clone(),
                        SERVICE,
                        "vm",
                        r.leader,
                        "",
                        r.ifindices.clone(),
                    ),
                )
                .map_err(other("RegisterMachineWithNetwork"))?,
            How::Create => m
                .call::<_, _, zbus::zvariant::OwnedObjectPath>(
                    "CreateMachineWithNetwork",
                    &(
                        r.name.as_str(),
                        r.id.clone(),
                        SERVICE,
                        "vm",
                        r.leader,
                        "",
                        r.ifindices.clone(),
                        scope,
                    ),
                )
                .map_err(other("CreateMachineWithNetwork"))?,
        };
        Ok(Api::WithNetwork)
    }

    fn unregister(&self, name: &str) -> BusResult<bool> {
        match self
            .manager()?
            .call::<_, _, ()>("UnregisterMachine", &(name,))
        {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = other("UnregisterMachine")(e);
                if e.is(NO_SUCH_MACHINE) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const U: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn names() {
        assert_eq!(machine_name("web-01", U), "web-01");
        assert_eq!(machine_name("web_01", U), "web-01");
        assert_eq!(machine_name("my vm.prod", U), "my-vm.prod");
        assert_eq!(machine_name("_a_..b_", U), "a.b");
        assert_eq!(machine_name("___", U), "vm-0f1e2d3c");
        let long = "x".repeat(80);
        let n = machine_name(&long, U);
        assert_eq!(n.len(), 64);
        assert!(n.ends_with("-0f1e2d3c"));
        assert_eq!(fallback_name("web", U), "web-0f1e2d3c");
        for n in [machine_name(&long, U), fallback_name(&"a.".repeat(40), U)] {
            assert!(crate::credential::hostname_is_valid(&n), "{n}");
        }
    }

    #[test]
    fn units() {
        assert_eq!(
            unit_of_cgroup(
                "0::/machine.slice/machine-qemu\\x2d1\\x2dtiny.scope/libvirt/emulator\n"
            ),
            Some("machine-qemu\\x2d1\\x2dtiny.scope".into())
        );
        assert_eq!(
            unit_of_cgroup("0::/system.slice/libvirtd.service\n"),
            Some("libvirtd.service".into())
        );
        assert_eq!(
            unit_of_cgroup("12:pids:/\n1:name=systemd:/system.slice/virtqemud.service\n0::/\n"),
            Some("virtqemud.service".into())
        );
    }
}
