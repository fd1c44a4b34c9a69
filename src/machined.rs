//! systemd-machined: machine names, the registration request, and the D-Bus adapter.
//!
//! Capability, not version: `RegisterMachineEx`/`CreateMachineEx` (systemd ≥ 259) first,
//! `…WithNetwork` on `UnknownMethod`. Never `TerminateMachine` (it stops the unit, which can
//! be libvirtd itself); `UnregisterMachine` kills nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::task::Poll;
use std::time::Duration;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

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
    /// `machine_by_pid(pid)` and `machine(name)` together (the zbus adapter asks both in one
    /// round trip); the second answer matters only when the first is `Ok(None)`.
    fn machine_by_pid_and_name(&self, pid: u32, name: &str) -> Lookups {
        (self.machine_by_pid(pid), self.machine(name))
    }
    fn register(&self, r: &Registration, how: How) -> BusResult<Api>;
    /// `Ok(false)`: there was no such machine.
    fn unregister(&self, name: &str) -> BusResult<bool>;
    /// Wait a little before asking again (the `attempt`th time), for machined to catch up.
    fn pause(&self, attempt: u32) {
        std::thread::sleep(Duration::from_micros(500 << attempt.min(5)));
    }
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
///
/// Built for a short-lived process: no proxies (they would add match rules and fetch
/// properties), zbus's executor ticked on the calling thread instead of a thread of its own,
/// the socket connected here rather than on a helper thread, lookups sent together and
/// answered in one round trip, and a machine's properties read with one `GetAll`.
pub struct Machined {
    conn: zbus::Connection,
    /// machined's unique bus name, from the sender of its latest reply.
    peer: RefCell<Option<String>>,
    /// Where to remember which `…Ex` methods this machined lacks (see `register`).
    api_cache: Option<PathBuf>,
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

const SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// A connected socket for a `unix:path=`/`unix:abstract=` address; `None` for any other
/// address (zbus connects those itself).
fn unix_socket(address: &str) -> Option<std::io::Result<UnixStream>> {
    use std::os::linux::net::SocketAddrExt;
    use zbus::address::transport::{Transport, UnixSocket};
    let a = zbus::Address::try_from(address).ok()?;
    let Transport::Unix(u) = a.transport() else {
        return None;
    };
    Some(match u.path() {
        UnixSocket::File(p) => UnixStream::connect(p),
        UnixSocket::Abstract(n) => {
            std::os::unix::net::SocketAddr::from_abstract_name(n.as_encoded_bytes())
                .and_then(|a| UnixStream::connect_addr(&a))
        }
        _ => return None,
    })
}

/// Poll two futures together (both requests go out before either reply is awaited).
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

impl Machined {
    pub fn connect(timeout: Duration) -> BusResult<Machined> {
        let connect = |e: &dyn std::fmt::Display| BusError::Connect(e.to_string());
        let address =
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| SYSTEM_BUS.to_string());
        let b = match unix_socket(&address) {
            // Our one-write handshake; on anything unexpected, zbus's own on a new socket.
            Some(Ok(s)) => match crate::dbus_hello::handshake(s)
                .and_then(|(s, guid)| Ok((async_io::Async::new(s)?, guid)))
                .map_err(|e| e.to_string())
                .and_then(|(s, guid)| {
                    let guid = zbus::Guid::try_from(guid).map_err(|e| e.to_string())?;
                    zbus::connection::Builder::authenticated_socket(s, guid)
                        .map_err(|e| e.to_string())
                }) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!("pipelined D-Bus handshake failed ({e}); using zbus's");
                    match unix_socket(&address) {
                        Some(Ok(s)) => zbus::connection::Builder::async_io_unix_stream(s),
                        Some(Err(e)) => return Err(connect(&format!("{address}: {e}"))),
                        None => unreachable!("the address was a unix socket a moment ago"),
                    }
                }
            },
            Some(Err(e)) => return Err(connect(&format!("{address}: {e}"))),
            None => {
                zbus::connection::Builder::address(address.as_str()).map_err(|e| connect(&e))?
            }
        };
        let conn = zbus::block_on(b.method_timeout(timeout).internal_executor(false).build())
            .map_err(|e| connect(&e))?;
        Ok(Machined {
            conn,
            peer: RefCell::new(None),
            api_cache: None,
        })
    }

    /// Remember across hook runs (in `path`) which `…Ex` methods the running machined lacks,
    /// so later registrations skip the call that would fail with `UnknownMethod`.
    pub fn with_api_cache(mut self, path: PathBuf) -> Machined {
        self.api_cache = Some(path);
        self
    }

    /// Run `f` to completion on this thread, ticking zbus's executor (its socket reader)
    /// while `f` waits.
    fn run<T>(&self, f: impl Future<Output = T>) -> T {
        let ex = self.conn.executor();
        zbus::block_on(async {
            let mut f = std::pin::pin!(f);
            loop {
                let mut tick = std::pin::pin!(ex.tick());
                let done = std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
                    Poll::Ready(v) => Poll::Ready(Some(v)),
                    Poll::Pending => tick.as_mut().poll(cx).map(|()| None),
                })
                .await;
                if let Some(v) = done {
                    return v;
                }
            }
        })
    }

    fn note_sender(&self, m: &zbus::Message) {
        if let Some(s) = m.header().sender() {
            if s.starts_with(':') {
                *self.peer.borrow_mut() = Some(s.to_string());
            }
        }
    }

    async fn call<B>(
        &self,
        path: ObjectPath<'_>,
        interface: &str,
        method: &'static str,
        body: &B,
    ) -> BusResult<zbus::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        match self
            .conn
            .call_method(Some(DEST), path, Some(interface), method, body)
            .await
        {
            Ok(m) => {
                self.note_sender(&m);
                Ok(m)
            }
            Err(e) => {
                if let zbus::Error::MethodError(_, _, m) = &e {
                    self.note_sender(m);
                }
                Err(other(method)(e))
            }
        }
    }

    async fn manager<B, R>(&self, method: &'static str, body: &B) -> BusResult<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
    {
        self.call(
            ObjectPath::from_static_str_unchecked(PATH),
            MANAGER,
            method,
            body,
        )
        .await?
        .body()
        .deserialize()
        .map_err(|e| other(method)(e))
    }

    /// All of a machine's properties in one `GetAll`.
    async fn info(&self, path: OwnedObjectPath) -> BusResult<MachineInfo> {
        const GET_ALL: &str = "GetAll";
        let mut props: HashMap<String, OwnedValue> = self
            .call(
                path.as_ref(),
                "org.freedesktop.DBus.Properties",
                GET_ALL,
                &(MACHINE,),
            )
            .await?
            .body()
            .deserialize()
            .map_err(other(GET_ALL))?;
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

    async fn lookup<B>(
        &self,
        method: &'static str,
        body: &B,
        none: &str,
    ) -> BusResult<Option<MachineInfo>>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        match self.manager::<_, OwnedObjectPath>(method, body).await {
            Ok(path) => self.info(path).await.map(Some),
            Err(e) if e.is(none) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `(bus GUID, machined's unique name)`: names one machined process for as long as
    /// the bus runs (unique names are never reused on a bus).
    fn instance(&self) -> Option<String> {
        let peer = self.peer.borrow().clone()?;
        Some(format!("{} {peer}", self.conn.server_guid()))
    }

    /// The cache: first line the instance, then one method name per line.
    fn lacks(&self, method: &str) -> bool {
        let (Some(path), Some(instance)) = (&self.api_cache, self.instance()) else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let mut lines = text.lines();
        lines.next() == Some(instance.as_str()) && lines.any(|l| l == method)
    }

    fn remember_lacks(&self, method: &str) {
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

const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
pub const NO_SUCH_MACHINE: &str = "org.freedesktop.machine1.NoSuchMachine";
pub const NO_MACHINE_FOR_PID: &str = "org.freedesktop.machine1.NoMachineForPID";

impl Bus for Machined {
    fn machine_by_pid(&self, pid: u32) -> BusResult<Option<MachineInfo>> {
        self.run(self.lookup("GetMachineByPID", &(pid,), NO_MACHINE_FOR_PID))
    }

    fn machine(&self, name: &str) -> BusResult<Option<MachineInfo>> {
        self.run(self.lookup("GetMachine", &(name,), NO_SUCH_MACHINE))
    }

    fn machine_by_pid_and_name(&self, pid: u32, name: &str) -> Lookups {
        self.run(both(
            self.lookup("GetMachineByPID", &(pid,), NO_MACHINE_FOR_PID),
            self.lookup("GetMachine", &(name,), NO_SUCH_MACHINE),
        ))
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
        let ex = match how {
            How::Register => "RegisterMachineEx",
            How::Create => "CreateMachineEx",
        };
        // A machined that answered UnknownMethod for `ex` before (the same process: bus
        // GUID and unique name match) cannot have gained it: go straight to the fallback.
        if let (Ok(fd), false) = (&pidfd, self.lacks(ex)) {
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
            let res =
                match how {
                    How::Register => {
                        self.run(self.manager::<_, OwnedObjectPath>(ex, &(r.name.as_str(), props)))
                    }
                    How::Create => self.run(self.manager::<_, OwnedObjectPath>(
                        ex,
                        &(r.name.as_str(), props, scope.clone()),
                    )),
                };
            match res {
                Ok(_) => return Ok(Api::Ex),
                Err(e) if e.is(UNKNOWN_METHOD) => self.remember_lacks(ex),
                Err(e) => return Err(e),
            }
        }
        match how {
            How::Register => self.run(self.manager::<_, OwnedObjectPath>(
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
            ))?,
            How::Create => self.run(self.manager::<_, OwnedObjectPath>(
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
            ))?,
        };
        Ok(Api::WithNetwork)
    }

    fn unregister(&self, name: &str) -> BusResult<bool> {
        match self.run(self.manager::<_, ()>("UnregisterMachine", &(name,))) {
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
