//! `virt-systemd-libvirt control-service` against libvirt's test driver (`test:///default`,
//! one running domain "test", its own state per connection): the varlink protocol as
//! machinectl speaks it, the mapping to libvirt, lifecycle events, bad input, and who may
//! connect. machinectl itself drives it in the sid lab (tests/lab_control.rs).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test driver's running domain.
const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

struct Service {
    child: Child,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Service {
    /// Start the service on a fresh socket directory; return once it said READY=1.
    fn start() -> Service {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("control");
        let notify = tmp.path().join("notify");
        let ready = UnixDatagram::bind(&notify).unwrap();
        ready
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_virt-systemd-libvirt"))
            .args(["-c", "test:///default", "--config", "/dev/null"])
            .args(["control-service", "--socket-dir"])
            .arg(&dir)
            .env("NOTIFY_SOCKET", &notify)
            .env("VIRT_SYSTEMD_LOG_STDERR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 64];
        let n = ready.recv(&mut buf).expect("READY=1 from the service");
        assert_eq!(&buf[..n], b"READY=1");
        Service {
            child,
            dir,
            _tmp: tmp,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(TEST_UUID)
    }

    fn connect(&self) -> Client {
        Client::new(&self.socket())
    }

    /// Stop it (SIGTERM) and return its log.
    fn stop(mut self) -> String {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        let st = self.child.wait().unwrap();
        assert!(st.success(), "the service ended with {st}:\n{log}");
        log
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Client {
    fn new(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn send(&mut self, msg: &Value) {
        let mut b = serde_json::to_vec(msg).unwrap();
        b.push(0);
        self.w.write_all(&b).unwrap();
    }

    /// The next reply; `None` when the service closed the connection.
    fn recv(&mut self) -> Option<Value> {
        let mut b = Vec::new();
        let n = self.r.read_until(0, &mut b).ok()?;
        if n == 0 || b.last() != Some(&0) {
            return None;
        }
        b.pop();
        Some(serde_json::from_slice(&b).expect("a JSON reply"))
    }

    fn call(&mut self, method: &str, parameters: Value) -> Value {
        let mut m = json!({ "method": method });
        if !parameters.is_null() {
            m["parameters"] = parameters;
        }
        self.send(&m);
        self.recv().expect("a reply")
    }

    fn instance(&mut self, method: &str) -> Value {
        self.call(&format!("io.systemd.MachineInstance.{method}"), json!({}))
    }

    /// A call that must succeed (zlink answers `()` as `{"continues":false}`).
    fn ok(&mut self, method: &str) {
        let r = self.instance(method);
        assert!(r.get("error").is_none(), "{method}: {r}");
    }
}

fn status(c: &mut Client) -> (bool, String) {
    let r = c.instance("Describe");
    let p = &r["parameters"];
    (
        p["running"].as_bool().expect("running"),
        p["status"].as_str().expect("status").to_string(),
    )
}

#[test]
fn verbs_act_through_libvirt_and_events_follow() {
    let svc = Service::start();
    let meta = std::fs::metadata(&svc.dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "socket directory");
    let names: Vec<_> = std::fs::read_dir(&svc.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [TEST_UUID], "one socket per running domain");

    let mut c = svc.connect();
    assert_eq!(status(&mut c), (true, "running".into()));
    // parameters omitted, null or {}: all the same
    c.send(&json!({"method": "io.systemd.MachineInstance.Describe", "parameters": null}));
    assert_eq!(c.recv().unwrap()["parameters"]["status"], "running");
    c.send(&json!({"method": "io.systemd.MachineInstance.QueryStatus"}));
    assert_eq!(c.recv().unwrap()["parameters"]["running"], true);

    // A subscriber (only STOP and RESUME wanted) on a second connection.
    let mut sub = svc.connect();
    sub.send(&json!({
        "method": "io.systemd.MachineInstance.SubscribeEvents",
        "parameters": {"filter": ["STOP", "RESUME"]},
        "more": true
    }));
    let first = sub.recv().unwrap();
    assert_eq!(first["parameters"]["event"], "READY", "{first}");
    assert_eq!(first["continues"], true, "{first}");

    c.ok("Pause");
    assert_eq!(status(&mut c), (false, "paused".into()));
    let e = sub.recv().unwrap();
    assert_eq!(e["parameters"]["event"], "STOP", "{e}");
    assert_eq!(
        e["parameters"]["data"]["libvirt"]["event"], "suspended",
        "{e}"
    );
    c.ok("Resume");
    assert_eq!(status(&mut c), (true, "running".into()));
    assert_eq!(sub.recv().unwrap()["parameters"]["event"], "RESUME");

    // Resuming a running domain: libvirt refuses; an errno, never EOPNOTSUPP (95), on
    // which machinectl would fall back to killing QEMU.
    let r = c.instance("Resume");
    assert_eq!(r["error"], "io.systemd.System", "{r}");
    let errno = r["parameters"]["errno"].as_i64().unwrap();
    assert_ne!(errno, 95, "{r}");

    let r = c.call(
        "io.systemd.MachineInstance.AddStorage",
        json!({"fileDescriptorIndex": 0, "name": "d"}),
    );
    assert_eq!(r["error"], "io.systemd.MachineInstance.NotSupported", "{r}");

    // Introspection, as varlinkctl does it.
    let r = c.call("org.varlink.service.GetInfo", Value::Null);
    let ifaces = r["parameters"]["interfaces"].to_string();
    assert!(ifaces.contains("io.systemd.MachineInstance"), "{r}");
    let r = c.call(
        "org.varlink.service.GetInterfaceDescription",
        json!({"interface": "io.systemd.MachineInstance"}),
    );
    let idl = r["parameters"]["description"].as_str().unwrap().to_string();
    for m in [
        "PowerOff()",
        "Reboot()",
        "Terminate()",
        "Pause()",
        "Resume()",
    ] {
        assert!(idl.contains(&format!("method {m}")), "{m} in\n{idl}");
    }

    // Terminate = destroy: the last event ends the subscription, the socket goes.
    c.ok("Terminate");
    let e = sub.recv().unwrap();
    assert_eq!(e["parameters"]["event"], "STOPPED", "{e}");
    assert_eq!(e["parameters"]["data"]["libvirt"]["detail"], "destroyed");
    assert_eq!(e["continues"], false, "{e}");
    let t0 = Instant::now();
    while svc.socket().exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "socket still there");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = svc.stop();
    assert!(log.contains("domain test: Terminate requested"), "{log}");
}

#[test]
fn bad_clients_do_not_stop_the_service() {
    let svc = Service::start();
    // Garbage: that connection is dropped.
    let mut g = svc.connect();
    g.w.write_all(b"{not json\0").unwrap();
    assert_eq!(g.recv(), None);
    // Unknown methods and parameters: zlink answers MethodNotFound, or (when it cannot
    // parse the call as one of ours) drops that connection. Either way, nothing happens.
    for m in [
        json!({"method": "io.systemd.MachineInstance.Explode"}),
        json!({"method": "io.systemd.MachineInstance.Explode", "parameters": {}}),
        json!({"method": "io.systemd.MachineInstance.Terminate", "parameters": {"now": true}}),
    ] {
        let mut c = svc.connect();
        c.send(&m);
        if let Some(r) = c.recv() {
            assert_eq!(
                r["error"], "org.varlink.service.MethodNotFound",
                "{m} → {r}"
            );
        }
    }
    let mut c = svc.connect();
    assert_eq!(status(&mut c), (true, "running".into()));
    // A client that sends and never reads, and one that never finishes its message.
    let mut deaf = svc.connect();
    for _ in 0..200 {
        deaf.send(&json!({"method": "io.systemd.MachineInstance.Describe"}));
    }
    let mut slow = svc.connect();
    slow.w
        .write_all(b"{\"method\":\"io.systemd.Machine")
        .unwrap();
    // A large message (4 MiB string): refused or answered, but the service lives on.
    let mut big = svc.connect();
    let huge = "x".repeat(4 << 20);
    big.send(&json!({"method": "io.systemd.MachineInstance.Describe", "parameters": {"x": huge}}));
    let _ = big.recv();
    // Others are still served.
    let mut d = svc.connect();
    assert_eq!(status(&mut d), (true, "running".into()));
    drop((g, deaf, slow, big));
    svc.stop();
}

#[test]
fn only_root_is_served() {
    let svc = Service::start();
    // Loosen what the service locked down, to reach the socket as another user: the
    // service itself must still refuse.
    std::fs::set_permissions(&svc.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(svc.socket(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "printf '%s\\0' '{{\"method\":\"io.systemd.MachineInstance.Terminate\"}}' \
         | timeout 20 socat -t 5 - UNIX-CONNECT:{} | tr '\\0' '\\n'; echo done",
        svc.socket().display()
    );
    let have_socat = Command::new("sh")
        .args(["-c", "command -v socat"])
        .output()
        .unwrap()
        .status
        .success();
    if !have_socat {
        // .ci/install-deps installs socat; say so when it is missing instead of passing.
        panic!("socat is needed for this test (apt-get install socat)");
    }
    let o = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(&script)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("done"),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // No reply reached the unprivileged client, and the domain still runs.
    assert!(!out.contains("parameters"), "{out}");
    let mut c = svc.connect();
    assert_eq!(status(&mut c), (true, "running".into()));
    let log = svc.stop();
    assert!(log.contains("refused a connection from uid 65534"), "{log}");
}
