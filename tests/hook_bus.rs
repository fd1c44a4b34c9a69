//! What the hook asks machined, and how often: a stand-in machined without the `…Ex`
//! methods (systemd < 259) on a real private dbus-daemon records every call. The hook tries
//! `…Ex` once per machined process (bus GUID + unique name), then goes straight to
//! `…WithNetwork`; a restarted machined is asked again. `release` reads the machine's
//! properties and unregisters it. Real machined runs these paths in lab_hook.rs.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

const UUID: &str = "6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f";
const MACHINE_PATH: &str = "/org/freedesktop/machine1/machine/web";

#[path = "common/bus.rs"]
mod bus;
use bus::{dbus_daemon, spawn_hook, FakeMachine, MachineError};

type Calls = Arc<Mutex<Vec<String>>>;

struct Manager {
    calls: Calls,
    leader: u32,
    registered: Arc<Mutex<bool>>,
}

type Props = Vec<(String, zbus::zvariant::OwnedValue)>;
type Scope = Vec<(String, zbus::zvariant::OwnedValue)>;

impl Manager {
    fn note(&self, call: &str) {
        self.calls.lock().unwrap().push(call.to_string());
    }
    fn register(&self, call: &str) -> zbus::zvariant::OwnedObjectPath {
        self.note(call);
        *self.registered.lock().unwrap() = true;
        zbus::zvariant::OwnedObjectPath::try_from(MACHINE_PATH).unwrap()
    }
}

#[zbus::interface(name = "org.freedesktop.machine1.Manager")]
impl Manager {
    #[zbus(name = "GetMachineByPID")]
    fn get_machine_by_pid(
        &self,
        pid: u32,
    ) -> Result<zbus::zvariant::OwnedObjectPath, MachineError> {
        self.note("GetMachineByPID");
        assert_eq!(pid, self.leader);
        Err(MachineError::NoMachineForPID(format!(
            "PID {pid} does not belong to any known machine"
        )))
    }
    #[zbus(name = "GetMachine")]
    fn get_machine(&self, name: &str) -> Result<zbus::zvariant::OwnedObjectPath, MachineError> {
        self.note(&format!("GetMachine {name}"));
        if name == "web" && *self.registered.lock().unwrap() {
            return Ok(zbus::zvariant::OwnedObjectPath::try_from(MACHINE_PATH).unwrap());
        }
        Err(MachineError::NoSuchMachine(format!(
            "No machine '{name}' known"
        )))
    }
    // What sd-bus answers for a method it does not have.
    #[zbus(name = "RegisterMachineEx")]
    fn register_machine_ex(&self, _name: &str, _props: Props) -> zbus::fdo::Result<()> {
        self.note("RegisterMachineEx");
        Err(zbus::fdo::Error::UnknownMethod(
            "Unknown method RegisterMachineEx".into(),
        ))
    }
    #[zbus(name = "CreateMachineEx")]
    fn create_machine_ex(
        &self,
        _name: &str,
        _props: Props,
        _scope: Scope,
    ) -> zbus::fdo::Result<()> {
        self.note("CreateMachineEx");
        Err(zbus::fdo::Error::UnknownMethod(
            "Unknown method CreateMachineEx".into(),
        ))
    }
    #[zbus(name = "RegisterMachineWithNetwork")]
    #[allow(clippy::too_many_arguments)]
    fn register_machine_with_network(
        &self,
        _name: &str,
        _id: Vec<u8>,
        _service: &str,
        _class: &str,
        _leader: u32,
        _root: &str,
        _ifindices: Vec<i32>,
    ) -> zbus::zvariant::OwnedObjectPath {
        self.register("RegisterMachineWithNetwork")
    }
    #[zbus(name = "CreateMachineWithNetwork")]
    #[allow(clippy::too_many_arguments)]
    fn create_machine_with_network(
        &self,
        _name: &str,
        _id: Vec<u8>,
        _service: &str,
        _class: &str,
        _leader: u32,
        _root: &str,
        _ifindices: Vec<i32>,
        _scope: Scope,
    ) -> zbus::zvariant::OwnedObjectPath {
        self.register("CreateMachineWithNetwork")
    }
    #[zbus(name = "UnregisterMachine")]
    fn unregister_machine(&self, name: &str) {
        self.note(&format!("UnregisterMachine {name}"));
        *self.registered.lock().unwrap() = false;
    }
}

fn uuid_bytes() -> Vec<u8> {
    let hex: String = UUID.chars().filter(|c| *c != '-').collect();
    (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn machined(addr: &str, calls: &Calls, leader: u32) -> zbus::blocking::Connection {
    let registered = Arc::new(Mutex::new(false));
    zbus::blocking::connection::Builder::address(addr)
        .unwrap()
        .name("org.freedesktop.machine1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/machine1",
            Manager {
                calls: calls.clone(),
                leader,
                registered,
            },
        )
        .unwrap()
        .serve_at(
            MACHINE_PATH,
            FakeMachine {
                name: "web".into(),
                id: uuid_bytes(),
                service: "virt-systemd".into(),
                leader,
                unit: "machine-web.scope".into(),
                vsock_cid: u32::MAX,
                reads: Some(calls.clone()),
            },
        )
        .unwrap()
        .build()
        .unwrap()
}

fn hook(dir: &std::path::Path, bus: &str, op: &str) -> String {
    let c = spawn_hook(
        &dir.join("config.toml"),
        bus,
        op,
        &format!("<domain type='qemu' id='3'><name>web</name><uuid>{UUID}</uuid><os><type>hvm</type></os><devices/></domain>"),
    );
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{op}: {err}");
    err
}

struct Vm(Child);
impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ex_probed_once_per_machined_and_getall_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let vm = Vm(Command::new("sleep").arg("300").spawn().unwrap());
    let leader = vm.0.id();
    std::fs::write(dir.path().join("web.pid"), leader.to_string()).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[machined]\ntimeout_ms = 10000\n[hook]\npid_dir = \"{0}\"\nstate_dir = \"{0}/state\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let d = dbus_daemon(dir.path());
    let calls: Calls = Default::default();
    let take = || std::mem::take(&mut *calls.lock().unwrap());
    let ex = |c: &[String]| c.iter().filter(|c| c.ends_with("MachineEx")).count();
    let with_network = |c: &[String]| c.iter().filter(|c| c.ends_with("WithNetwork")).count();

    let conn = machined(&d.1, &calls, leader);
    let err = hook(dir.path(), &d.1, "started");
    assert!(err.contains("registered machine web"), "{err}");
    let c = take();
    // Each lookup once: those sent before the XML was parsed are the ones used.
    let n = |call: &str| c.iter().filter(|c| *c == call).count();
    assert_eq!((n("GetMachineByPID"), n("GetMachine web")), (1, 1), "{c:?}");
    assert_eq!((ex(&c), with_network(&c)), (1, 1), "{c:?}");

    // release: the machine's properties (one GetAll), then UnregisterMachine.
    let err = hook(dir.path(), &d.1, "release");
    assert!(err.contains("unregistered"), "{err}");
    let c = take();
    assert_eq!(
        c,
        ["GetMachine web", "properties", "UnregisterMachine web"],
        "{err}"
    );

    // The same machined again: no second UnknownMethod.
    hook(dir.path(), &d.1, "started");
    let c = take();
    assert_eq!((ex(&c), with_network(&c)), (0, 1), "{c:?}");
    hook(dir.path(), &d.1, "release");
    take();

    // A restarted machined (new unique name) may have been upgraded: asked again.
    drop(conn);
    let conn = machined(&d.1, &calls, leader);
    // The bus hands the name over when it has seen the old connection go, which need not
    // have happened yet (the new one's request waits in the queue): wait until it has.
    let dbus = zbus::blocking::fdo::DBusProxy::new(&conn).unwrap();
    let me = conn.unique_name().unwrap().to_owned();
    let t = std::time::Instant::now();
    while !dbus
        .get_name_owner("org.freedesktop.machine1".try_into().unwrap())
        .is_ok_and(|o| *o == me)
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "the restarted machined never got its name"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    hook(dir.path(), &d.1, "started");
    let c = take();
    assert_eq!((ex(&c), with_network(&c)), (1, 1), "{c:?}");
}
