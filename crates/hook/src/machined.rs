//! systemd-machined: machine names, the registration request, and the D-Bus adapter.
//!
//! Capability, not version: `RegisterMachineEx`/`CreateMachineEx` (systemd ≥ 259) first,
//! `…WithNetwork` on `UnknownMethod`. Never `TerminateMachine` (it stops the unit, which can
//! be libvirtd itself); `UnregisterMachine` kills nothing.

use crate::dbus_wire::{Wire, WireError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::Message;

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
    /// No answer by the event's deadline.
    #[error("machined did not answer within {ms} ms ({method})")]
    Timeout { method: &'static str, ms: u128 },
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
    pub fn is_timeout(&self) -> bool {
        matches!(self, BusError::Timeout { .. })
    }

    pub fn is(&self, error_name: &str) -> bool {
        matches!(self, BusError::Method { name, .. } if name == error_name)
    }
}

pub type BusResult<T> = Result<T, BusError>;

/// Answers of `GetMachineByPID` and `GetMachine`, asked together.
pub type Lookups = (
    BusResult<Option<MachineInfo>>,
    BusResult<Option<MachineInfo>>,
);

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
    /// The domain's control socket (`io.systemd.MachineInstance`), given to machined where
    /// it takes one (varlink `Register`, systemd ≥ 261).
    pub control: Option<String>,
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
    /// varlink `io.systemd.Machine.Register`, with the control address.
    Varlink,
    Ex,
    WithNetwork,
}

/// The operations the hook needs; the zbus adapter implements it, tests may inject faults.
pub trait Bus {
    fn machine_by_pid(&self, pid: u32) -> BusResult<Option<MachineInfo>>;
    fn machine(&self, name: &str) -> BusResult<Option<MachineInfo>>;
    /// `machine_by_pid(pid)` and `machine(name)` together (the D-Bus adapter asks both in one
    /// round trip); the second answer matters only when the first is `Ok(None)`.
    fn machine_by_pid_and_name(&self, pid: u32, name: &str) -> Lookups {
        (self.machine_by_pid(pid), self.machine(name))
    }
    fn register(&self, r: &Registration, how: How) -> BusResult<Api>;
    /// Might machined take a control address (varlink `Register`, systemd ≥ 261)? `false`
    /// once it refused one.
    fn takes_control(&self) -> bool {
        false
    }
    /// `Ok(false)`: there was no such machine.
    fn unregister(&self, name: &str) -> BusResult<bool>;
    /// Wait a little before asking again (the `attempt`th time, from 0), for machined to
    /// catch up; `false` when there is no time left for that.
    fn pause(&self, attempt: u32) -> bool;
}

/// The `attempt`th pause: 0.5 ms doubling up to 16 ms.
fn pause_length(attempt: u32) -> Duration {
    Duration::from_micros(500 << attempt.min(5))
}

/// Machine name for a domain: machined's `hostname_is_valid` rules (LDH labels separated by
/// single dots, at most 64 characters). Invalid characters (`_`, spaces, …) become `-`;
/// a name longer than 64 is cut to 55 and suffixed with `-` and 8 hex digits of the UUID,
/// so distinct long names stay distinct.
pub fn machine_name(domain: &str, uuid_hex: &str) -> String {
    let name = valid_labels(domain);
    let short = &uuid_hex[..uuid_hex.len().min(8)];
    if name.is_empty() {
        return format!("vm-{short}");
    }
    if name.len() <= 64 {
        return name;
    }
    with_suffix(&name, short)
}

/// [`machine_name`] when it needs nothing of the UUID (the name is neither empty nor too
/// long once made valid), as it is for most domains.
pub fn plain_machine_name(domain: &str) -> Option<String> {
    let name = valid_labels(domain);
    (!name.is_empty() && name.len() <= 64).then_some(name)
}

/// `domain` with invalid characters as `-`, empty labels dropped.
fn valid_labels(domain: &str) -> String {
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
    labels.join(".")
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

/// The adapter on the system bus (or `DBUS_SYSTEM_BUS_ADDRESS`), over `dbus_wire`: one
/// thread, no proxies (they would add match rules and fetch properties), the lookups sent
/// together with the handshake, a machine's properties read with one `GetAll`.
pub struct Machined {
    wire: RefCell<Wire>,
    timeout: Duration,
    /// machined's unique bus name, from the sender of its latest reply.
    peer: RefCell<Option<String>>,
    /// Where to remember which `…Ex` methods this machined lacks (see `register`).
    api_cache: Option<PathBuf>,
    /// Lookups sent ahead by `prefetch`.
    prefetched: RefCell<Option<Prefetched>>,
    /// machined's varlink socket.
    varlink: PathBuf,
}

/// A lookup on its way: (method, serial, the error that means "none").
type Sent = (&'static str, BusResult<u32>, &'static str);

struct Prefetched {
    pid: u32,
    by_pid: Sent,
    name: Option<(String, Sent)>,
}

/// What `cached` remembers when machined takes no control address.
const VARLINK_CONTROL: &str = "io.systemd.Machine.Register controlAddress";
/// And when it does (the cache file holds what machined lacks, and this one line of what
/// it has, so that the description is asked for once per machined).
const TAKES_CONTROL: &str = "+io.systemd.Machine.Register controlAddress";

const SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// A connected socket for a `unix:path=`/`unix:abstract=` address (the system bus is one).
fn unix_socket(address: &str) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    use zbus::address::transport::{Transport, UnixSocket};
    let unsupported = || std::io::Error::other("not a unix:path= or unix:abstract= address");
    let a = zbus::Address::try_from(address).map_err(std::io::Error::other)?;
    let Transport::Unix(u) = a.transport() else {
        return Err(unsupported());
    };
    match u.path() {
        UnixSocket::File(p) => UnixStream::connect(p),
        UnixSocket::Abstract(n) => {
            std::os::unix::net::SocketAddr::from_abstract_name(n.as_encoded_bytes())
                .and_then(|a| UnixStream::connect_addr(&a))
        }
        _ => Err(unsupported()),
    }
}

impl Machined {
    /// Connect to the bus; every later wait ends by `timeout` from now.
    pub fn connect(timeout: Duration) -> BusResult<Machined> {
        let address =
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| SYSTEM_BUS.to_string());
        let connect = |e: &dyn std::fmt::Display| BusError::Connect(format!("{address}: {e}"));
        let sock = unix_socket(&address).map_err(|e| connect(&e))?;
        let wire = Wire::new(sock, Instant::now() + timeout).map_err(|e| connect(&e))?;
        Ok(Machined {
            wire: RefCell::new(wire),
            timeout,
            peer: RefCell::new(None),
            api_cache: None,
            prefetched: RefCell::new(None),
            varlink: crate::machined_varlink::SOCKET.into(),
        })
    }

    /// Remember across hook runs (in `path`) which `…Ex` methods the running machined lacks,
    /// so later registrations skip the call that would fail with `UnknownMethod`.
    pub fn with_api_cache(mut self, path: PathBuf) -> Machined {
        self.api_cache = Some(path);
        self
    }

    /// A failure of the connection itself, as the hook's errors.
    fn wire_error(&self, method: &'static str, e: WireError) -> BusError {
        match e {
            WireError::Timeout => BusError::Timeout {
                method,
                ms: self.timeout.as_millis(),
            },
            // Before the bus answered AUTH, nothing reached machined.
            e if self.wire.borrow().guid().is_none() => BusError::Connect(e.to_string()),
            e => BusError::Other {
                method,
                msg: e.to_string(),
            },
        }
    }

    /// Send `GetMachineByPID(pid)` and `GetMachine(name)` now (with the handshake), so the
    /// answers are on their way while the caller does other work; `machine_by_pid_and_name`
    /// for the same pid picks them up.
    pub fn prefetch(&self, pid: u32, name: Option<&str>) {
        let by_pid = self.by_pid(pid);
        let name = name.map(|n| (n.to_string(), self.by_name(n)));
        // A failure to send shows in the answers.
        let _ = self.wire.borrow_mut().flush();
        *self.prefetched.borrow_mut() = Some(Prefetched { pid, by_pid, name });
    }

    /// Queue a call to machined; it goes out with the next `answer`.
    fn send<B>(&self, path: &str, interface: &str, method: &'static str, body: &B) -> BusResult<u32>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let queued = self
            .wire
            .borrow_mut()
            .queue(path, interface, method, DEST, body);
        queued.map_err(|e| self.wire_error(method, e))
    }

    /// The answer to call `serial`: its return message, or its error as `BusError::Method`.
    fn answer(&self, method: &'static str, serial: u32) -> BusResult<Message> {
        let r = self.wire.borrow_mut().reply(serial);
        let m = r.map_err(|e| self.wire_error(method, e))?;
        let h = m.header();
        if let Some(s) = h.sender().filter(|s| s.starts_with(':')) {
            *self.peer.borrow_mut() = Some(s.to_string());
        }
        if m.message_type() == zbus::message::Type::Error {
            let name = h.error_name().map(|n| n.to_string()).unwrap_or_default();
            // By convention the first argument of an error is its message.
            let msg = m.body().deserialize::<(String,)>().map(|t| t.0);
            return Err(BusError::Method {
                method,
                name,
                msg: msg.unwrap_or_default(),
            });
        }
        Ok(m)
    }

    fn manager<B, R>(&self, method: &'static str, body: &B) -> BusResult<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
    {
        let serial = self.send(PATH, MANAGER, method, body)?;
        decode(method, &self.answer(method, serial)?)
    }

    /// Machines for lookups already sent (method, serial, the error that means "none"):
    /// their answers, then `GetAll` for each machine found, those sent together too.
    fn machines<const N: usize>(&self, sent: [Sent; N]) -> [BusResult<Option<MachineInfo>>; N] {
        let paths = sent.map(|(method, serial, none)| {
            match serial
                .and_then(|s| self.answer(method, s))
                .and_then(|m| decode::<OwnedObjectPath>(method, &m))
            {
                Ok(p) => Ok(Some(p)),
                Err(e) if e.is(none) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let asked = paths.map(|p| {
            p.and_then(|p| {
                p.map(|p| self.send(p.as_str(), PROPERTIES, GET_ALL, &(MACHINE,)))
                    .transpose()
            })
        });
        asked.map(|serial| match serial {
            Ok(Some(s)) => match self.answer(GET_ALL, s) {
                Ok(m) => info(&m).map(Some),
                // Freed between the lookup and this question (machined collecting an
                // unregistered machine): there is no such machine now.
                Err(e) if e.is(UNKNOWN_OBJECT) => Ok(None),
                Err(e) => Err(e),
            },
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn by_pid(&self, pid: u32) -> Sent {
        const M: &str = "GetMachineByPID";
        (M, self.send(PATH, MANAGER, M, &(pid,)), NO_MACHINE_FOR_PID)
    }

    fn by_name(&self, name: &str) -> Sent {
        const M: &str = "GetMachine";
        (M, self.send(PATH, MANAGER, M, &(name,)), NO_SUCH_MACHINE)
    }

    /// `(bus GUID, machined's unique name)`: names one machined process for as long as
    /// the bus runs (unique names are never reused on a bus).
    fn instance(&self) -> Option<String> {
        let peer = self.peer.borrow().clone()?;
        let guid = self.wire.borrow().guid()?.to_string();
        Some(format!("{guid} {peer}"))
    }

    /// varlink `Register` with `control`. `Err(None)`: this machined cannot take a control
    /// address (no varlink socket, or it refused the parameter): use D-Bus.
    fn register_varlink(
        &self,
        r: &Registration,
        control: &str,
        pidfd: &impl std::os::fd::AsFd,
    ) -> Result<(), Option<BusError>> {
        use crate::machined_varlink::{self as vl, CallError};
        const METHOD: &str = "io.systemd.Machine.Register";
        let left = self.wire.borrow().remaining().map_err(|_| {
            Some(BusError::Timeout {
                method: METHOD,
                ms: self.timeout.as_millis(),
            })
        })?;
        let id: String = r.id.iter().map(|b| format!("{b:02x}")).collect();
        let reg = vl::Register {
            if_indices: r.ifindices.clone(),
            control_address: Some(control),
            ..vl::Register::vm(&r.name, id, r.leader, Some(pidfd), r.vsock_cid)
        };
        match vl::register(self.varlink.as_ref(), &reg, Instant::now() + left) {
            Ok(()) => Ok(()),
            Err(e) if e.is_unknown_parameter() => Err(None),
            Err(CallError::Absent(_)) => Err(None),
            Err(CallError::Timeout) => Err(Some(BusError::Timeout {
                method: METHOD,
                ms: self.timeout.as_millis(),
            })),
            Err(CallError::Reply { name, parameters }) => Err(Some(BusError::Method {
                method: METHOD,
                name,
                msg: parameters,
            })),
            Err(CallError::Io(msg)) => Err(Some(BusError::Other {
                method: METHOD,
                msg,
            })),
        }
    }

    /// The cache: first line the instance, then one line per fact: a method or parameter
    /// machined lacks, or (with a leading `+`) one it has.
    fn cached(&self, method: &str) -> bool {
        let (Some(path), Some(instance)) = (&self.api_cache, self.instance()) else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let mut lines = text.lines();
        lines.next() == Some(instance.as_str()) && lines.any(|l| l == method)
    }

    fn remember(&self, method: &str) {
        let (Some(path), Some(instance)) = (&self.api_cache, self.instance()) else {
            return;
        };
        let mut text = match std::fs::read_to_string(path) {
            Ok(t) if t.lines().next() == Some(instance.as_str()) => t,
            _ => format!("{instance}\n"),
        };
        if !text.lines().skip(1).any(|l| l == method) {
            text.push_str(method);
            text.push('\n');
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // Only an optimisation: a failed write costs one UnknownMethod next time.
            let _ = crate::fsutil::write_atomic(path, text.as_bytes(), 0o644);
        }
    }
}

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const GET_ALL: &str = "GetAll";

fn decode<R>(method: &'static str, m: &Message) -> BusResult<R>
where
    R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
{
    m.body().deserialize().map_err(|e| BusError::Other {
        method,
        msg: e.to_string(),
    })
}

/// A machine from its `GetAll` answer.
fn info(m: &Message) -> BusResult<MachineInfo> {
    let mut props: HashMap<String, OwnedValue> = decode(GET_ALL, m)?;
    fn take<T: TryFrom<OwnedValue>>(
        props: &mut HashMap<String, OwnedValue>,
        key: &str,
    ) -> BusResult<T> {
        props
            .remove(key)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| BusError::Other {
                method: GET_ALL,
                msg: format!("machine property {key} missing or of another type"),
            })
    }
    Ok(MachineInfo {
        name: take(&mut props, "Name")?,
        id: take(&mut props, "Id")?,
        service: take(&mut props, "Service")?,
        class: take(&mut props, "Class")?,
        leader: take(&mut props, "Leader")?,
        unit: take(&mut props, "Unit")?,
    })
}

const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
pub const NO_SUCH_MACHINE: &str = "org.freedesktop.machine1.NoSuchMachine";
pub const NO_MACHINE_FOR_PID: &str = "org.freedesktop.machine1.NoMachineForPID";

impl Bus for Machined {
    fn takes_control(&self) -> bool {
        if !self.varlink.exists() || self.cached(VARLINK_CONTROL) {
            return false;
        }
        if self.cached(TAKES_CONTROL) {
            return true;
        }
        let Ok(left) = self.wire.borrow().remaining() else {
            return false;
        };
        match crate::machined_varlink::takes_control_address(&self.varlink, Instant::now() + left) {
            Ok(true) => {
                self.remember(TAKES_CONTROL);
                true
            }
            Ok(false) => {
                self.remember(VARLINK_CONTROL);
                false
            }
            Err(_) => false,
        }
    }

    fn machine_by_pid(&self, pid: u32) -> BusResult<Option<MachineInfo>> {
        let [m] = self.machines([self.by_pid(pid)]);
        m
    }

    fn machine(&self, name: &str) -> BusResult<Option<MachineInfo>> {
        let [m] = self.machines([self.by_name(name)]);
        m
    }

    fn machine_by_pid_and_name(&self, pid: u32, name: &str) -> Lookups {
        let early = self.prefetched.take().filter(|p| p.pid == pid);
        let (by_pid, by_name) = match early {
            Some(Prefetched {
                by_pid,
                name: Some((n, by_name)),
                ..
            }) if n == name => (by_pid, by_name),
            Some(p) => (p.by_pid, self.by_name(name)),
            None => (self.by_pid(pid), self.by_name(name)),
        };
        let [p, n] = self.machines([by_pid, by_name]);
        (p, n)
    }

    fn register(&self, r: &Registration, how: How) -> BusResult<Api> {
        use zbus::zvariant::{Fd, Value};
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
        // With a control address, machinectl's verbs act through libvirt instead of
        // killing QEMU with signals. Only for a scope of QEMU's own: `allocateUnit` would
        // give a scope without the ordering after libvirtd that `CreateMachineEx` sets.
        if let (Some(ctl), How::Register, Ok(fd)) = (&r.control, how, &pidfd) {
            if !self.cached(VARLINK_CONTROL) {
                match self.register_varlink(r, ctl, fd) {
                    Ok(()) => return Ok(Api::Varlink),
                    Err(Some(e)) => return Err(e),
                    Err(None) => self.remember(VARLINK_CONTROL),
                }
            }
        }
        let ex = match how {
            How::Register => "RegisterMachineEx",
            How::Create => "CreateMachineEx",
        };
        // A machined that answered UnknownMethod for `ex` before (the same process: bus
        // GUID and unique name match) cannot have gained it: go straight to the fallback.
        // So does a bus that would not pass the pidfd.
        let fds = self.wire.borrow().unix_fds();
        if let (Ok(fd), false, true) = (&pidfd, self.cached(ex), fds) {
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
                How::Register => self.manager::<_, OwnedObjectPath>(ex, &(r.name.as_str(), props)),
                How::Create => {
                    self.manager::<_, OwnedObjectPath>(ex, &(r.name.as_str(), props, scope.clone()))
                }
            };
            match res {
                Ok(_) => return Ok(Api::Ex),
                Err(e) if e.is(UNKNOWN_METHOD) => self.remember(ex),
                Err(e) => return Err(e),
            }
        }
        match how {
            How::Register => self.manager::<_, OwnedObjectPath>(
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
            )?,
            How::Create => self.manager::<_, OwnedObjectPath>(
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
            )?,
        };
        Ok(Api::WithNetwork)
    }

    /// Within the event's deadline, keeping room for the question that follows.
    fn pause(&self, attempt: u32) -> bool {
        let d = pause_length(attempt);
        match self.wire.borrow().remaining() {
            Ok(left) if left > d * 2 => {
                std::thread::sleep(d);
                true
            }
            _ => false,
        }
    }

    fn unregister(&self, name: &str) -> BusResult<bool> {
        match self.manager::<_, ()>("UnregisterMachine", &(name,)) {
            Ok(()) => Ok(true),
            Err(e) if e.is(NO_SUCH_MACHINE) => Ok(false),
            Err(e) => Err(e),
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
            assert!(virt_systemd_core::credential::hostname_is_valid(&n), "{n}");
        }
        // The prefetched lookup's name is the final name whenever it exists.
        for d in ["web-01", "web_01", "_a_..b_", "___", &long, &"y".repeat(64)] {
            match plain_machine_name(d) {
                Some(p) => assert_eq!(p, machine_name(d, U), "{d}"),
                None => assert!(machine_name(d, U).contains("0f1e2d3c"), "{d}"),
            }
        }
        assert_eq!(
            plain_machine_name(&"y".repeat(64)).map(|n| n.len()),
            Some(64)
        );
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
