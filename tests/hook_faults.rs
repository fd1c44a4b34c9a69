//! The hook under faults real machined cannot produce: a machined that never answers, a
//! bus that drops mid-call, no machined at all. A real private dbus-daemon carries the
//! calls; an in-process zbus service stands in for machined only to inject the fault.
//! Each case asserts the hook exits 0, says why in its log, and leaves the "VM" alone.
//!
//! No assertion depends on which of two timers fires first or on the hook finishing within
//! a few hundred milliseconds (issue 12): where a case tests the D-Bus deadline the backstop
//! gets a minute of grace ([`NO_BACKSTOP`]), where it tests the backstop nothing else can
//! end the hook, and deadlines that are not under test get room.

use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

/// `[hook] grace_ms` where the backstop must not fire before the D-Bus deadline's own error.
const NO_BACKSTOP: u64 = 60_000;

const UUID: &str = "6c1e1a2b-7d1f-4c57-9c4e-1a2b3c4d5e6f";

#[path = "common/bus.rs"]
mod bus;
use bus::{dbus_daemon, spawn_hook, FakeMachine, MachineError};

/// A machined whose GetMachineByPID never answers (and tells the test it was called).
struct Stuck(mpsc::Sender<()>);

#[zbus::interface(name = "org.freedesktop.machine1.Manager")]
impl Stuck {
    #[zbus(name = "GetMachineByPID")]
    async fn get_machine_by_pid(&self, _pid: u32) -> zbus::zvariant::OwnedObjectPath {
        let _ = self.0.send(());
        std::future::pending::<()>().await;
        unreachable!()
    }
    #[zbus(name = "GetMachine")]
    async fn get_machine(&self, _name: &str) -> zbus::zvariant::OwnedObjectPath {
        let _ = self.0.send(());
        std::future::pending::<()>().await;
        unreachable!()
    }
}

fn fake_machined(addr: &str) -> (zbus::blocking::Connection, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let conn = zbus::blocking::connection::Builder::address(addr)
        .unwrap()
        .name("org.freedesktop.machine1")
        .unwrap()
        .serve_at("/org/freedesktop/machine1", Stuck(tx))
        .unwrap()
        .build()
        .unwrap();
    (conn, rx)
}

struct Setup {
    dir: tempfile::TempDir,
    vm: Child,
    /// The hook's own bounds: `[machined] timeout_ms` + `[hook] grace_ms`.
    bound: Duration,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.vm.kill();
        let _ = self.vm.wait();
    }
}

/// A "VM", its pid file and a config with the D-Bus deadline `timeout_ms` and the backstop
/// `grace_ms` after it.
fn setup(timeout_ms: u64, grace_ms: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    // Stands in for QEMU: must survive whatever the hook runs into.
    let vm = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(dir.path().join("web.pid"), vm.id().to_string()).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[machined]\ntimeout_ms = {timeout_ms}\n[hook]\ngrace_ms = {grace_ms}\npid_dir = \"{0}\"\nstate_dir = \"{0}/state\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    Setup {
        dir,
        vm,
        bound: Duration::from_millis(timeout_ms + grace_ms),
    }
}

fn domain_xml() -> String {
    format!("<domain type='qemu' id='3'><name>web</name><uuid>{UUID}</uuid><os><type>hvm</type></os><devices/></domain>")
}

/// Run the hook as libvirt would; returns (exit code, stderr) or panics if it does not
/// finish within its own bounds (deadline + grace) and a minute more: a hang is the bug
/// under test, not a slow run.
fn hook(s: &Setup, bus: &str, op: &str) -> (i32, String) {
    let limit = s.bound + Duration::from_secs(60);
    let c = spawn_hook(&s.dir.path().join("config.toml"), bus, op, &domain_xml());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(c.wait_with_output());
    });
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| {
            panic!("{op}: hook did not return within {limit:?}: a wait is unbounded")
        })
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn alive(s: &mut Setup) -> bool {
    s.vm.try_wait().unwrap().is_none()
}

#[test]
fn machined_never_answers() {
    // The D-Bus deadline is under test: the backstop gets a minute, so only the deadline
    // can end the hook, however late the hook gets the CPU.
    let mut s = setup(300, NO_BACKSTOP);
    let d = dbus_daemon(s.dir.path());
    let (_conn, called) = fake_machined(&d.1);
    // The fake never replies: only the hook's own deadline can end this.
    for op in ["started", "reconnect"] {
        let (code, err) = hook(&s, &d.1, op);
        assert_eq!(code, 0, "{op}: {err}");
        // The D-Bus wait itself ends at the deadline and names the call (not the backstop).
        assert!(
            err.contains("machined did not answer within 300 ms (GetMachine"),
            "{op}: {err}"
        );
        // Sent before the hook returned: waiting here only bounds a hang.
        called
            .recv_timeout(Duration::from_secs(60))
            .expect("the hook asked machined");
        assert!(alive(&mut s), "{op}: VM harmed");
    }
    // Stop events are bounded too (state says a machine is pending).
    let state = s.dir.path().join("state/domains");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(format!("{UUID}.json")),
        format!(
            "{{\"domain\":\"web\",\"uuid\":\"{UUID}\",\"machine\":\"web\",\"registered\":true}}"
        ),
    )
    .unwrap();
    let (code, err) = hook(&s, &d.1, "release");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("machined did not answer within 300 ms (GetMachine)"),
        "{err}"
    );
}

#[test]
fn bus_dropped_mid_call() {
    // Only the dropped bus may end the wait: the deadline and the backstop are a minute away.
    let mut s = setup(60_000, NO_BACKSTOP);
    let mut d = dbus_daemon(s.dir.path());
    let (_conn, called) = fake_machined(&d.1);
    let addr = d.1.clone();
    let killer = std::thread::spawn(move || {
        called
            .recv_timeout(Duration::from_secs(60))
            .expect("called");
        let _ = d.0.kill();
        let _ = d.0.wait();
    });
    let (code, err) = hook(&s, &addr, "started");
    killer.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("registration failed"), "{err}");
    assert!(err.contains("VM left alone"), "{err}");
    // The cause: the bus went away (EOF, or a reset), not a deadline.
    assert!(
        err.contains("the bus closed the connection") || err.contains("reset by peer"),
        "{err}"
    );
    assert!(alive(&mut s));
}

#[test]
fn no_machined_on_the_bus() {
    // The bus answers ServiceUnknown at once; the deadline only bounds a hang.
    let mut s = setup(30_000, NO_BACKSTOP);
    let d = dbus_daemon(s.dir.path());
    let (code, err) = hook(&s, &d.1, "started");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("ServiceUnknown"), "{err}");
    assert!(alive(&mut s));
    // No bus at all.
    let (code, err) = hook(&s, "unix:path=/nonexistent/bus", "started");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cannot reach the system bus"), "{err}");
}

#[test]
fn stuck_outside_dbus_is_ended_by_the_backstop() {
    // A pid file that blocks on open (a FIFO nobody writes to): no D-Bus deadline covers
    // that wait, the backstop does, `grace_ms` after the deadline. It is the only timer that
    // can end this hook, so its message does not depend on scheduling (it names the bound,
    // not the time taken).
    let mut s = setup(300, 700);
    let pid_file = s.dir.path().join("web.pid");
    std::fs::remove_file(&pid_file).unwrap();
    let made = Command::new("mkfifo").arg(&pid_file).status().unwrap();
    assert!(made.success());
    let d = dbus_daemon(s.dir.path());
    let (code, err) = hook(&s, &d.1, "started");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("did not finish within 1000 ms"), "{err}");
    assert!(alive(&mut s));
}

/// machined after `UnregisterMachine` of libvirt's machine, as it is until its garbage
/// collection runs (real machined does that soon, but late under load: seen in the lab):
/// the machine is still found by its leader for `linger` more lookups, and a registration
/// meanwhile fails.
struct Lingering {
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    unregistered: std::sync::atomic::AtomicBool,
    linger: std::sync::atomic::AtomicU32,
    /// Lookups answered with the machine's path after it was freed (a race: the object
    /// is gone by the time the hook asks for its properties).
    stale: std::sync::atomic::AtomicU32,
}

const LIBVIRT_PATH: &str = "/org/freedesktop/machine1/machine/qemu_2d1_2dweb";
const FREED_PATH: &str = "/org/freedesktop/machine1/machine/freed";

impl Lingering {
    fn note(&self, call: &str) {
        self.calls.lock().unwrap().push(call.to_string());
    }
    fn held(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        !self.unregistered.load(SeqCst) || self.linger.load(SeqCst) > 0
    }
    fn register(&self, call: &str) -> zbus::fdo::Result<zbus::zvariant::OwnedObjectPath> {
        self.note(call);
        if self.held() {
            return Err(zbus::fdo::Error::FileExists("File exists".into()));
        }
        Ok(
            zbus::zvariant::OwnedObjectPath::try_from("/org/freedesktop/machine1/machine/web")
                .unwrap(),
        )
    }
}

type Props = Vec<(String, zbus::zvariant::OwnedValue)>;

#[zbus::interface(name = "org.freedesktop.machine1.Manager")]
impl Lingering {
    #[zbus(name = "GetMachineByPID")]
    fn get_machine_by_pid(
        &self,
        _pid: u32,
    ) -> Result<zbus::zvariant::OwnedObjectPath, MachineError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.note("GetMachineByPID");
        if !self.held() {
            if self.stale.load(SeqCst) > 0 {
                self.stale.fetch_sub(1, SeqCst);
                return Ok(zbus::zvariant::OwnedObjectPath::try_from(FREED_PATH).unwrap());
            }
            return Err(MachineError::NoMachineForPID("no machine".into()));
        }
        if self.unregistered.load(SeqCst) {
            let _ = self.linger.fetch_sub(1, SeqCst);
        }
        Ok(zbus::zvariant::OwnedObjectPath::try_from(LIBVIRT_PATH).unwrap())
    }
    #[zbus(name = "GetMachine")]
    fn get_machine(&self, name: &str) -> Result<zbus::zvariant::OwnedObjectPath, MachineError> {
        self.note(&format!("GetMachine {name}"));
        Err(MachineError::NoSuchMachine("no such machine".into()))
    }
    #[zbus(name = "UnregisterMachine")]
    fn unregister_machine(&self, name: &str) {
        self.note(&format!("UnregisterMachine {name}"));
        self.unregistered
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    #[zbus(name = "RegisterMachineEx")]
    fn register_machine_ex(
        &self,
        _name: &str,
        _props: Props,
    ) -> zbus::fdo::Result<zbus::zvariant::OwnedObjectPath> {
        self.register("RegisterMachineEx")
    }
}

/// Replace libvirt's machine on a machined that lets go of it after `linger` lookups (and
/// answers `stale` more with a path that is gone); returns the calls machined saw and the
/// hook's stderr. The backstop stays out of it: the D-Bus deadline ends what it must.
fn replace_lingering(linger: u32, stale: u32, timeout_ms: u64) -> (Vec<String>, String) {
    let mut s = setup(timeout_ms, NO_BACKSTOP);
    let d = dbus_daemon(s.dir.path());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let _conn = zbus::blocking::connection::Builder::address(d.1.as_str())
        .unwrap()
        .name("org.freedesktop.machine1")
        .unwrap()
        .serve_at(
            "/org/freedesktop/machine1",
            Lingering {
                calls: calls.clone(),
                unregistered: false.into(),
                linger: linger.into(),
                stale: stale.into(),
            },
        )
        .unwrap()
        .serve_at(
            LIBVIRT_PATH,
            FakeMachine {
                name: "qemu-1-web".into(),
                id: vec![7; 16],
                service: "libvirt-qemu".into(),
                leader: s.vm.id(),
                unit: "machine-qemu\\x2d1\\x2dweb.scope".into(),
                vsock_cid: u32::MAX,
                reads: None,
            },
        )
        .unwrap()
        .build()
        .unwrap();
    let (code, err) = hook(&s, &d.1, "started");
    assert_eq!(code, 0, "{err}");
    assert!(alive(&mut s));
    let c = calls.lock().unwrap().clone();
    (c, err)
}

/// Replace libvirt's machine (see `replace_lingering`) and expect our registration; returns
/// the lookups the hook made between UnregisterMachine and RegisterMachineEx.
fn lookups_before_registering(linger: u32, stale: u32) -> usize {
    // machined lets go after a few lookups: the deadline only bounds a hang.
    let (calls, err) = replace_lingering(linger, stale, 30_000);
    assert!(err.contains("registered machine web"), "{err}");
    let after: Vec<&str> = calls
        .iter()
        .skip_while(|c| *c != "UnregisterMachine qemu-1-web")
        .map(String::as_str)
        .collect();
    let n = after.len() - 2;
    assert_eq!(after[after.len() - 1], "RegisterMachineEx", "{after:?}");
    assert!(
        after[1..=n].iter().all(|c| *c == "GetMachineByPID"),
        "{after:?}"
    );
    n
}

#[test]
fn registers_only_after_machined_lets_go_of_libvirts_machine() {
    // Three lookups still find it, the fourth does not.
    assert_eq!(lookups_before_registering(3, 0), 4);
}

#[test]
fn never_registers_while_machined_holds_libvirts_machine() {
    // Never lets go: the hook gives up within its deadline and never registers. 3 s leave
    // room for connecting, the lookups and UnregisterMachine on a loaded machine; the loop
    // then asks again for the rest of them. Whether the deadline ends it between lookups or
    // inside one, the log names the cause.
    let (calls, err) = replace_lingering(u32::MAX, 0, 3000);
    assert!(
        err.contains("machined still holds machine qemu-1-web"),
        "{err}"
    );
    assert!(
        calls.iter().any(|c| c == "UnregisterMachine qemu-1-web"),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("Register")),
        "{calls:?}"
    );
}

#[test]
fn a_machine_freed_between_lookup_and_getall_is_gone() {
    // Seen in the lab: GetMachineByPID named the machine, machined freed it, GetAll got
    // UnknownObject. That machine is gone: register.
    assert_eq!(lookups_before_registering(0, 1), 1);
}
