//! `virt-systemd-hook`: what libvirt runs on each QEMU domain lifecycle event
//! (`NAME OP SUBOP EXTRA`, domain XML on stdin).
//!
//! Rules (DESIGN §4): never call back into libvirt; bound every wait; fail open — log and
//! exit 0 — except `prepare` in strict mode; `reconnect` always exits 0 (non-zero makes
//! libvirt kill the VM).

pub mod register;
pub mod session;

use crate::config::{Config, Register};
use crate::domain::{self, DomainXml, Facts};
use crate::logging::*;
use crate::machined::{self, Machined};
use crate::state::{DomainState, Store};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;
use tracing::{error, info, warn};

/// Where the hook looks for things; fixed in production, redirected in tests.
#[derive(Debug, Clone)]
pub struct Paths {
    pub proc: PathBuf,
    pub sys_class_net: PathBuf,
    /// The effective user: 0 for the system daemon (qemu:///system); a session daemon
    /// (qemu:///session) runs the same hook as its user.
    pub uid: u32,
    /// A session user's runtime directory; `None`: `/run/user/UID`.
    pub user_runtime: Option<PathBuf>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            proc: "/proc".into(),
            sys_class_net: "/sys/class/net".into(),
            uid: rustix::process::geteuid().as_raw(),
            user_runtime: None,
        }
    }
}

/// Run one hook invocation; returns the exit code.
pub fn run(argv: &[String], stdin: &[u8], cfg: &Config, paths: &Paths) -> i32 {
    let (Some(name), Some(op)) = (argv.first(), argv.get(1)) else {
        eprintln!("usage: virt-systemd-hook NAME OP SUBOP EXTRA < domain.xml (run by libvirt)");
        return 2;
    };
    let sub = argv.get(2).map_or("-", String::as_str);
    let extra = argv.get(3).map_or("-", String::as_str);
    match op.as_str() {
        // Filters: libvirt takes our stdout as the XML to use. Pass it through unchanged.
        "migrate" | "restore" => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(stdin).and_then(|_| out.flush()) {
                error!(domain = %name, op = %op, "cannot pass the XML through: {e}");
                return 1;
            }
            return 0;
        }
        "prepare" | "start" | "started" | "stopped" | "release" | "reconnect" => {}
        _ => return 0,
    }
    // A session daemon's hook runs as its user: root's state directory, pid files and
    // machined are not for its domains; the user's own machined is (session.rs). `prepare`
    // (the drift check, which needs nothing of the host) works as for system domains.
    let session = paths.uid != 0;
    let acts = matches!(op.as_str(), "started" | "reconnect" | "stopped" | "release");
    let registers = !session
        && matches!(op.as_str(), "started" | "reconnect")
        && cfg.machined.register != Register::Never;
    let _backstop =
        (registers || matches!(op.as_str(), "stopped" | "release") || (session && acts))
            .then(|| backstop(name, op, cfg));
    // Ask machined first, parse while it answers.
    let early = registers.then(|| Early::start(name, cfg));
    let xml = match domain::decode(stdin).and_then(DomainXml::parse) {
        Ok(d) => d,
        Err(e) => {
            error!(domain = %name, op = %op, message_id = MSG_FAILED, "cannot read the domain XML on stdin: {e}; VM left alone");
            return if op == "prepare" && cfg.machined.strict {
                1
            } else {
                0
            };
        }
    };
    let facts = xml.facts();
    let uuid = facts
        .uuid
        .as_deref()
        .and_then(|u| uuid::Uuid::parse_str(u).ok());
    let Some(uuid) = uuid else {
        warn!(domain = %name, op = %op, message_id = MSG_SKIPPED, "domain XML has no valid <uuid>; nothing to do");
        return 0;
    };
    if session && op != "prepare" {
        session::run(op, &xml, &facts, uuid, cfg, paths);
        return 0;
    }
    let store = Store::new(&cfg.hook.state_dir);
    match (op.as_str(), sub) {
        ("prepare", _) => prepare(&xml, &facts, cfg),
        ("start", _) => {
            let mut st = store
                .load(&uuid.hyphenated().to_string())
                .ok()
                .flatten()
                .unwrap_or_default();
            st.domain = facts.name.clone();
            st.uuid = uuid.hyphenated().to_string();
            st.vsock_cid = facts.vsock.as_ref().and_then(|v| v.cid);
            let record = crate::metadata::read(&xml).ok().flatten();
            st.enabled = record.is_some();
            st.notify_port = record.and_then(|r| r.notify);
            // A new boot: readiness from the previous one no longer holds.
            let _ = store.clear_readiness(&st.uuid);
            if let Err(e) = store.save(&st) {
                warn!(domain = %facts.name, op = "start", "cannot record state: {e}");
            }
            0
        }
        ("started", _) | ("reconnect", _) => {
            restore_readiness(&xml, &store, uuid, op);
            let Some(early) = early else {
                return 0;
            };
            let notify = crate::metadata::read(&xml).ok().flatten().map(|r| r.notify);
            started(op, &facts, notify, uuid, cfg, paths, &store, early);
            0
        }
        ("stopped", _) | ("release", _) => {
            stopped(name, op, extra, uuid, &store, op == "release", timeout(cfg));
            0
        }
        _ => 0,
    }
}

fn timeout(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.machined.timeout_ms.max(1))
}

/// `started`'s first steps, taken before the XML is parsed: QEMU's pid from libvirt's pid
/// file and the bus connection with both lookups on their way. They need only the domain
/// name libvirt passes: the pid file is named after it, and so is the machine.
struct Early {
    pidfile: PathBuf,
    /// QEMU's pid and the bus; `None` without a pid (nothing to ask).
    leader: Option<(u32, machined::BusResult<Machined>)>,
}

impl Early {
    fn start(name: &str, cfg: &Config) -> Early {
        let pidfile = cfg.hook.pid_dir.join(format!("{name}.pid"));
        let leader = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .map(|pid| {
                let bus = Machined::connect(timeout(cfg)).map(|bus| {
                    bus.prefetch(pid, machined::plain_machine_name(name).as_deref());
                    bus.with_api_cache(cfg.hook.state_dir.join("machined-api"))
                });
                (pid, bus)
            });
        Early { pidfile, leader }
    }
}

/// How long after the D-Bus deadline the backstop ends a hook stuck elsewhere
/// (`[hook] grace_ms`).
fn grace(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.hook.grace_ms.max(1))
}

/// The backstop for what the D-Bus deadline does not cover (a pid file that blocks on
/// open, a hung filesystem): unless the returned sender is dropped by then, a watchdog
/// thread logs and ends the process with status 0 (fail-open) `grace` after the deadline.
/// D-Bus waits end at the deadline by themselves and say which call it was; the work runs
/// on the calling thread, so no hand-off between threads sits on its path.
fn backstop(name: &str, op: &str, cfg: &Config) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let (name, op, d) = (name.to_string(), op.to_string(), timeout(cfg) + grace(cfg));
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(d) {
            warn!(domain = %name, op = %op, message_id = MSG_TIMEOUT,
                  "virt-systemd-hook did not finish within {} ms; VM left alone", d.as_millis());
            // SAFETY: _exit ends the process at once; unlike exit() it runs no atexit
            // handlers, so it cannot race the main thread finishing at the same moment.
            // Nothing is buffered: these ops write no stdout, logs are sent synchronously.
            unsafe { libc::_exit(0) }
        }
    });
    tx
}

/// The MESSAGE_ID for a failed D-Bus exchange.
fn bus_message_id(e: &machined::BusError) -> &'static str {
    if e.is_timeout() {
        MSG_TIMEOUT
    } else {
        MSG_FAILED
    }
}

fn prepare(xml: &DomainXml, facts: &Facts, cfg: &Config) -> i32 {
    let record = match crate::metadata::read(xml) {
        Ok(Some(r)) => r,
        Ok(None) => return 0,
        Err(e) => {
            warn!(domain = %facts.name, op = "prepare", message_id = MSG_DRIFT, "{e}");
            return 0;
        }
    };
    let drift = crate::report::drift(xml, facts, &record);
    if drift.is_empty() {
        return 0;
    }
    let msg = drift.join("; ");
    if cfg.machined.strict {
        // libvirt shows the hook's stderr in the start error.
        eprintln!(
            "virt-systemd: refusing to start {}: its XML differs from what virt-systemd recorded: {msg} \
             (run 'virt-systemd enable {}' or set strict = false)",
            facts.name, facts.name
        );
        error!(domain = %facts.name, op = "prepare", message_id = MSG_DRIFT, "refused to start: {msg}");
        1
    } else {
        warn!(domain = %facts.name, op = "prepare", message_id = MSG_DRIFT, "drift: {msg}");
        0
    }
}

/// `notify`: `None` when the domain has no virt-systemd record, else its readiness port.
#[allow(clippy::too_many_arguments)]
fn started(
    op: &str,
    facts: &Facts,
    notify: Option<Option<u32>>,
    uuid: uuid::Uuid,
    cfg: &Config,
    paths: &Paths,
    store: &Store,
    early: Early,
) {
    let u = uuid.hyphenated().to_string();
    let mut st = store
        .load(&u)
        .ok()
        .flatten()
        .unwrap_or_else(|| DomainState {
            domain: facts.name.clone(),
            uuid: u.clone(),
            ..Default::default()
        });
    // The live XML is the truth for this boot (also after a libvirtd restart).
    st.enabled = notify.is_some();
    st.notify_port = notify.flatten();
    st.vsock_cid = facts.vsock.as_ref().and_then(|v| v.cid);
    let Some((leader, bus)) = early.leader else {
        warn!(domain = %facts.name, uuid = %u, op, message_id = MSG_FAILED,
              "no QEMU pid in {}; not registered", early.pidfile.display());
        return;
    };
    let bus = match bus {
        Ok(b) => b,
        Err(e) => {
            warn!(domain = %facts.name, uuid = %u, op, message_id = MSG_FAILED, "{e}; VM left alone");
            return;
        }
    };
    if op == "reconnect" && st.registered {
        if let Some(m) = st.machine.clone() {
            match crate::machined::Bus::machine(&bus, &m) {
                Ok(Some(info)) if info.id == uuid.as_bytes() => return,
                Ok(_) => {
                    info!(domain = %facts.name, machine = %m, op, "registration lost; registering again")
                }
                Err(e) => {
                    warn!(domain = %facts.name, op, message_id = bus_message_id(&e), "{e}; VM left alone");
                    return;
                }
            }
        }
    }
    let cgroup =
        std::fs::read_to_string(paths.proc.join(format!("{leader}/cgroup"))).unwrap_or_default();
    let ifindices = facts
        .interfaces
        .iter()
        .filter_map(|dev| {
            std::fs::read_to_string(paths.sys_class_net.join(dev).join("ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .collect();
    let target = register::Target {
        domain: &facts.name,
        uuid,
        leader,
        unit: machined::unit_of_cgroup(&cgroup),
        ifindices,
        vsock_cid: facts.vsock.as_ref().and_then(|v| v.cid),
        control: Some(cfg.control.socket(&uuid).display().to_string()),
    };
    let mut save = |s: &DomainState| {
        if let Err(e) = store.save(s) {
            warn!(domain = %s.domain, "cannot record state: {e}");
        }
    };
    match register::register(&bus, cfg, &target, &mut st, &mut save) {
        Ok(register::Outcome::Registered {
            name,
            how,
            api,
            replaced,
        }) => info!(
            domain = %facts.name, uuid = %u, machine = %name, op, leader, message_id = MSG_REGISTERED,
            "registered machine {name} ({how:?}, {api:?}{})",
            replaced.map(|r| format!(", replacing libvirt's {r}")).unwrap_or_default()
        ),
        Ok(register::Outcome::AlreadyRegistered(n)) => {
            info!(domain = %facts.name, machine = %n, op, "already registered")
        }
        Ok(register::Outcome::KeptLibvirt(n)) => info!(
            domain = %facts.name, machine = %n, op, message_id = MSG_SKIPPED,
            "keeping libvirt's own machine {n} (libvirt_machine = \"keep\")"
        ),
        Ok(register::Outcome::ForeignMachine(n)) => warn!(
            domain = %facts.name, machine = %n, op, message_id = MSG_SKIPPED,
            "QEMU already belongs to machine {n}, which is not libvirt's or ours; left alone"
        ),
        Ok(register::Outcome::NameTaken(n)) => warn!(
            domain = %facts.name, machine = %n, op, message_id = MSG_FAILED,
            "machine name {n} and its fallback are taken by other machines; not registered"
        ),
        Err(e) => warn!(
            domain = %facts.name, uuid = %u, op, message_id = bus_message_id(&e),
            "registration failed: {e}; VM left alone"
        ),
    }
}

fn stopped(
    name: &str,
    op: &str,
    extra: &str,
    uuid: uuid::Uuid,
    store: &Store,
    release: bool,
    t: Duration,
) {
    let u = uuid.hyphenated().to_string();
    let Ok(Some(mut st)) = store.load(&u) else {
        return;
    };
    if st.registered || st.machine.is_some() {
        match Machined::connect(t).and_then(|bus| register::unregister(&bus, &mut st)) {
            Ok(true) => {
                info!(domain = %name, uuid = %u, machine = st.machine.as_deref().unwrap_or(""),
                              op, reason = extra, message_id = MSG_UNREGISTERED, "unregistered")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(domain = %name, uuid = %u, op, message_id = bus_message_id(&e), "unregister failed: {e}")
            }
        }
        st.machine = None;
    }
    let r = if release {
        let _ = store.clear_readiness(&u);
        store.remove(&u)
    } else {
        store.save(&st)
    };
    if let Err(e) = r {
        warn!(domain = %name, op, "cannot update state: {e}");
    }
}

/// Readiness the guest reported before this QEMU took over (an incoming migration; the
/// control service mirrors it into the live metadata, which travels with the domain), when
/// this host has none for the domain. A fresh start has no such metadata: libvirt never
/// writes live metadata into the persistent definition.
fn restore_readiness(xml: &DomainXml, store: &Store, uuid: uuid::Uuid, op: &str) {
    let u = uuid.hyphenated().to_string();
    if store.load_readiness(&u).is_some() {
        return;
    }
    let Some(r) = crate::notify::carry::read(xml) else {
        return;
    };
    match store.save_readiness(&u, &r) {
        Ok(()) => {
            info!(uuid = %u, op, ready = r.ready, "readiness restored from the domain's live metadata")
        }
        Err(e) => warn!(uuid = %u, op, "cannot restore readiness: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::protocol::Readiness;

    fn xml_with(r: Option<&Readiness>) -> String {
        let meta = r
            .map(|r| {
                crate::notify::carry::element(r).replacen(
                    "<readiness>",
                    "<vsr:readiness xmlns:vsr='urn:virt-systemd:readiness:1'>",
                    1,
                )
            })
            .unwrap_or_default()
            .replace("</readiness>", "</vsr:readiness>");
        format!("<domain type='kvm'><name>v</name><metadata>{meta}</metadata></domain>")
    }

    #[test]
    fn readiness_is_restored_only_where_this_host_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let u = uuid::Uuid::parse_str("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap();
        let key = u.hyphenated().to_string();
        let carried = Readiness {
            ready: true,
            status: Some("up".into()),
            ..Readiness::default()
        };
        // A fresh start: no metadata, nothing written.
        let x = xml_with(None);
        restore_readiness(&DomainXml::parse(&x).unwrap(), &store, u, "started");
        assert_eq!(store.load_readiness(&key), None);
        // A migrated domain: restored.
        let x = xml_with(Some(&carried));
        restore_readiness(&DomainXml::parse(&x).unwrap(), &store, u, "started");
        assert_eq!(store.load_readiness(&key), Some(carried.clone()));
        // What this host's listener recorded wins over what the domain carries.
        let mine = Readiness {
            ready: false,
            status: Some("rebooting".into()),
            ..Readiness::default()
        };
        store.save_readiness(&key, &mine).unwrap();
        restore_readiness(&DomainXml::parse(&x).unwrap(), &store, u, "reconnect");
        assert_eq!(store.load_readiness(&key), Some(mine));
    }
}
