//! `status` and `doctor` with D-Bus: a real private dbus-daemon, on which an in-process zbus
//! service stands in for systemd-machined and PID 1 (this host runs neither). It answers
//! `GetMachine`, carries a machine object with machined's property names, and introspects
//! with `RegisterMachineEx`, so the reading side is exercised end to end; whether real
//! machined matches is for the lab (tests/lab*).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_virt-systemd");
const UUID: &str = "5f0c3a52-6f7e-4d1a-9a53-0d2f8c1e4b11";

#[path = "common/bus.rs"]
mod bus;
use bus::bins::hook;
use bus::{dbus_daemon, FakeMachine, MachineError};

struct Manager;

#[zbus::interface(name = "org.freedesktop.machine1.Manager")]
impl Manager {
    #[zbus(name = "GetMachine")]
    fn get_machine(&self, name: &str) -> Result<zbus::zvariant::OwnedObjectPath, MachineError> {
        if name == "on" {
            Ok(
                zbus::zvariant::OwnedObjectPath::try_from("/org/freedesktop/machine1/machine/on")
                    .unwrap(),
            )
        } else {
            Err(MachineError::NoSuchMachine(format!(
                "No machine '{name}' known"
            )))
        }
    }
    #[zbus(name = "RegisterMachineEx")]
    fn register_machine_ex(
        &self,
        _name: &str,
        _props: Vec<(String, zbus::zvariant::OwnedValue)>,
    ) -> zbus::zvariant::OwnedObjectPath {
        unreachable!("status and doctor never register")
    }
}

struct Systemd;

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Systemd {
    #[zbus(property, name = "Version")]
    fn version(&self) -> String {
        "262-test".into()
    }
}

/// Fake machined and PID 1 on the private bus; dropped connections vanish from the bus.
fn services(addr: &str) -> (zbus::blocking::Connection, zbus::blocking::Connection) {
    let m = zbus::blocking::connection::Builder::address(addr)
        .unwrap()
        .name("org.freedesktop.machine1")
        .unwrap()
        .serve_at("/org/freedesktop/machine1", Manager)
        .unwrap()
        .serve_at(
            "/org/freedesktop/machine1/machine/on",
            FakeMachine {
                name: "on".into(),
                id: uuid::Uuid::parse_str(UUID).unwrap().as_bytes().to_vec(),
                service: "virt-systemd".into(),
                leader: 4242,
                unit: "machine-qemu\\x2d1\\x2don.scope".into(),
                vsock_cid: 42,
                reads: None,
            },
        )
        .unwrap()
        .build()
        .unwrap();
    let s = zbus::blocking::connection::Builder::address(addr)
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at("/org/freedesktop/systemd1", Systemd)
        .unwrap()
        .build()
        .unwrap();
    (m, s)
}

fn node() -> String {
    format!(
        "test://{}/tests/admin_data/node.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    // The libvirt commands run in virt-systemd-libvirt, which virt-systemd execs.
    bus::bins::dir();
    let mut c = Command::new(BIN);
    c.args(args).env_remove("LIBVIRT_DEFAULT_URI");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn status_shows_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dbus_daemon(dir.path());
    let _svc = services(&bus.1);
    let o = run(
        &["--config", "/dev/null", "-c", &node(), "status", "--json"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.1)],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["machined"], serde_json::Value::Null, "{v}");
    let on = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "on")
        .unwrap();
    assert_eq!(
        on["machine"],
        serde_json::json!({
            "name": "on", "state": "running", "service": "virt-systemd", "class": "vm",
            "id": UUID.replace('-', ""), "leader": 4242,
            "unit": "machine-qemu\\x2d1\\x2don.scope", "vsock_cid": 42
        })
    );
    // A stopped domain is not looked up; the transient "tr" has no machine.
    for d in v["domains"].as_array().unwrap() {
        if d["name"] != "on" {
            assert!(d["machine"].is_null(), "{d}");
        }
    }
    let o = run(
        &["--config", "/dev/null", "-c", &node(), "status", "on"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.1)],
    );
    let t = String::from_utf8(o.stdout).unwrap();
    assert!(
        t.lines().nth(1).unwrap().contains("42   on (running)"),
        "{t}"
    );
}

/// A fake procfs with one daemon that started `offset` seconds from now.
fn fake_proc(dir: &Path, offset: i64) -> std::path::PathBuf {
    let p = dir.join("proc");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    std::fs::create_dir_all(p.join("77")).unwrap();
    // btime = now + offset - 1 s; the daemon started 100 ticks (1 s at 100 Hz) after boot.
    // The clock-tick rate comes from our own auxv; USER_HZ is 100 on the test hosts.
    std::fs::write(p.join("stat"), format!("btime {}\n", now + offset - 1)).unwrap();
    std::fs::write(p.join("77/comm"), "virtqemud\n").unwrap();
    std::fs::write(
        p.join("77/stat"),
        "77 (virtqemud) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0",
    )
    .unwrap();
    p
}

#[test]
fn doctor_all_pass_then_each_fault() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dbus_daemon(dir.path());
    let svc = services(&bus.1);
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let proxy = dir.path().join("systemd-ssh-proxy");
    std::fs::copy("/bin/true", &proxy).unwrap();
    let later = fake_proc(dir.path(), 3600);
    let hooks_s = hooks.to_str().unwrap().to_string();
    let proxy_s = proxy.to_str().unwrap().to_string();
    let later_s = later.to_str().unwrap().to_string();
    let env = |extra: &[(&'static str, String)]| {
        let mut e: Vec<(&'static str, String)> = vec![
            ("DBUS_SYSTEM_BUS_ADDRESS", bus.1.clone()),
            ("VIRT_SYSTEMD_HOOKS_DIR", hooks_s.clone()),
            ("VIRT_SYSTEMD_PROC", later_s.clone()),
            ("VIRT_SYSTEMD_VHOST_VSOCK", "/dev/null".into()),
            ("VIRT_SYSTEMD_SSH_PROXY", proxy_s.clone()),
        ];
        for (k, v) in extra {
            e.retain(|(x, _)| x != k);
            e.push((k, v.clone()));
        }
        e
    };
    let doctor = |extra: &[(&'static str, String)]| {
        let e = env(extra);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = run(
            &["--config", "/dev/null", "-c", &node(), "doctor", "--json"],
            &e,
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
        (o.status.code(), v)
    };
    let verdict = |v: &serde_json::Value, id: &str| -> String {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["verdict"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "absent".into())
    };

    // Without the hook: fail, exit 1, and hook-loaded is not judged.
    let (code, v) = doctor(&[]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(verdict(&v, "hook"), "fail");
    assert_eq!(verdict(&v, "hook-loaded"), "absent");

    // Install it; the (fake) daemon started an hour from "now": everything passes but the
    // warning about machinectl's verbs (no control service), which names the systemd
    // version it was given.
    let o = Command::new(BIN)
        .args(["hook-install", "--hook", hook()])
        .env("VIRT_SYSTEMD_HOOKS_DIR", &hooks)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let (code, v) = doctor(&[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["version"], 1);
    for c in v["checks"].as_array().unwrap() {
        if c["id"] == "machinectl" {
            // 262 takes control sockets; no control service runs here.
            assert_eq!(c["verdict"], "warn", "{c}");
            let m = c["message"].as_str().unwrap();
            assert!(
                m.contains("virt-systemd-control.service is not running"),
                "{c}"
            );
            assert!(m.contains("systemd 262-test"), "{c}");
            assert_eq!(
                c["fix"], "systemctl enable --now virt-systemd-control.service",
                "{c}"
            );
            continue;
        }
        assert_eq!(c["verdict"], "pass", "{c}");
        assert!(c["fix"].is_null(), "{c}");
    }
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "machined"
            && c["message"]
                .as_str()
                .unwrap()
                .contains("RegisterMachineEx available")));
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "systemd" && c["message"] == "systemd 262-test"));

    // The daemon started before the hook appeared: warn, say restart or SIGHUP.
    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    let earlier = fake_proc(&earlier, -3600);
    let (code, v) = doctor(&[("VIRT_SYSTEMD_PROC", earlier.display().to_string())]);
    assert_eq!(code, Some(0));
    assert_eq!(verdict(&v, "hook-loaded"), "warn");
    let fix = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "hook-loaded")
        .unwrap()["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fix.contains("restart") && fix.contains("SIGHUP"), "{fix}");

    // No vhost-vsock, no ssh proxy: warnings, still exit 0.
    let (code, v) = doctor(&[
        ("VIRT_SYSTEMD_VHOST_VSOCK", "/nonexistent".into()),
        ("VIRT_SYSTEMD_SSH_PROXY", "/nonexistent".into()),
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(verdict(&v, "vhost-vsock"), "warn");
    assert_eq!(verdict(&v, "ssh-proxy"), "warn");

    // libvirt unreachable: fail.
    let o = run(
        &[
            "--config",
            "/dev/null",
            "-c",
            "qemu+unix:///system?socket=/nonexistent",
            "doctor",
            "--json",
        ],
        &env(&[])
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdict(&v, "libvirt"), "fail");

    // machined (and PID 1) gone from the bus: machined fails, systemd warns.
    drop(svc);
    let (code, v) = doctor(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(verdict(&v, "machined"), "fail");
    assert_eq!(verdict(&v, "systemd"), "warn");

    // Broken config: fail, but doctor still reports everything else.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[machined]\nregister = \"sometimes\"\n").unwrap();
    let e = env(&[]);
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = run(
        &["--config", bad.to_str().unwrap(), "-c", &node(), "doctor"],
        &e,
    );
    assert_eq!(o.status.code(), Some(1));
    let t = String::from_utf8(o.stdout).unwrap();
    assert!(t.contains("fail  config "), "{t}");
    assert!(t.contains("pass  hook "), "{t}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("virt-systemd: error: 2 checks failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A machined that never answers; counts the questions.
struct Silent(std::sync::Arc<std::sync::atomic::AtomicUsize>);

#[zbus::interface(name = "org.freedesktop.machine1.Manager")]
impl Silent {
    #[zbus(name = "GetMachine")]
    async fn get_machine(&self, _name: &str) -> zbus::zvariant::OwnedObjectPath {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await;
        unreachable!()
    }
}

#[test]
fn status_survives_a_silent_machined() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dbus_daemon(dir.path());
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _m = zbus::blocking::connection::Builder::address(bus.1.as_str())
        .unwrap()
        .name("org.freedesktop.machine1")
        .unwrap()
        .serve_at("/org/freedesktop/machine1", Silent(asked.clone()))
        .unwrap()
        .build()
        .unwrap();
    let o = run(
        &["--config", "/dev/null", "-c", &node(), "status", "--json"],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.1)],
    );
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let why = v["machined"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(v["domains"].as_array().unwrap().len(), 3);
    // One call times out (1.5 s); after that machined is not asked again, whichever domain
    // comes next. (Counted, not timed: three timeouts would also fit in a few seconds.)
    // On a machine too loaded to connect within 1.5 s, the connection is what failed, and
    // machined is not asked at all.
    let count = || asked.load(std::sync::atomic::Ordering::SeqCst);
    if why.contains("cannot ask systemd-machined") {
        // The question may reach the stand-in after status gave up on it.
        let t = std::time::Instant::now();
        while count() == 0 && t.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(count(), 1, "{why}");
    } else {
        assert_eq!(count(), 0, "{why}");
    }
}
