//! A private `dbus-daemon` for tests that need a real bus (shared by hook_faults.rs,
//! hook_bus.rs and admin_bus.rs through `#[path]`). Killed on drop. And the hook run as
//! libvirt would run it against such a bus.
#![allow(dead_code)]

#[path = "bins.rs"]
pub mod bins;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The daemon and its address (`unix:path=…`).
pub struct Daemon(pub Child, pub String);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a bus of type "system" listening in `dir`, open to everyone (tests only).
pub fn dbus_daemon(dir: &Path) -> Daemon {
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}/bus</listen>
<auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>"#,
            dir.display()
        ),
    )
    .unwrap();
    let mut c = Command::new("dbus-daemon")
        .args(["--nofork", "--print-address", "--config-file"])
        .arg(&conf)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon (package dbus) is needed");
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Daemon(c, line.trim().to_string())
}

/// Start `virt-systemd-hook web OP begin -` as libvirt would, with `config` and the bus at
/// `bus`, logging to stderr, `xml` on its stdin (closed after).
pub fn spawn_hook(config: &Path, bus: &str, op: &str, xml: &str) -> Child {
    assert!(
        rustix::process::geteuid().is_root(),
        "run as root: libvirt's system daemon runs the hook as root (run by another user it \
         is a session domain's hook, which leaves machined alone)"
    );
    let mut c = Command::new(bins::hook())
        .args(["web", op, "begin", "-"])
        .env("VIRT_SYSTEMD_CONFIG", config)
        .env("VIRT_SYSTEMD_LOG_STDERR", "1")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
    c
}

/// The errors a stand-in machined answers with, named as machined names them.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.machine1")]
pub enum MachineError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoMachineForPID(String),
    NoSuchMachine(String),
}

/// A machine object (org.freedesktop.machine1.Machine) for a stand-in machined, with
/// machined's property names. `reads`, when set, gets "properties" on each read of Name.
pub struct FakeMachine {
    pub name: String,
    pub id: Vec<u8>,
    pub service: String,
    pub leader: u32,
    pub unit: String,
    pub vsock_cid: u32,
    pub reads: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
}

#[zbus::interface(name = "org.freedesktop.machine1.Machine")]
impl FakeMachine {
    #[zbus(property, name = "Name")]
    fn name(&self) -> String {
        if let Some(r) = &self.reads {
            r.lock().unwrap().push("properties".into());
        }
        self.name.clone()
    }
    #[zbus(property, name = "Id")]
    fn id(&self) -> Vec<u8> {
        self.id.clone()
    }
    #[zbus(property, name = "Service")]
    fn service(&self) -> String {
        self.service.clone()
    }
    #[zbus(property, name = "Class")]
    fn class(&self) -> String {
        "vm".into()
    }
    #[zbus(property, name = "Leader")]
    fn leader(&self) -> u32 {
        self.leader
    }
    #[zbus(property, name = "Unit")]
    fn unit(&self) -> String {
        self.unit.clone()
    }
    #[zbus(property, name = "State")]
    fn state(&self) -> String {
        "running".into()
    }
    #[zbus(property, name = "VSockCID")]
    fn vsock_cid(&self) -> u32 {
        self.vsock_cid
    }
}
