//! `virt-systemd control-service`: one `io.systemd.MachineInstance` varlink socket per running
//! libvirt domain, `<control.socket_dir>/<UUID>`, so that `machinectl poweroff|reboot|
//! terminate|pause|resume` act through libvirt (systemd ≥ 261 connects to the address the hook
//! registered). Kept in step with libvirt by its lifecycle events, and reconciled from scratch
//! whenever the connection is (re)made: after our own start and after a libvirtd restart.
//!
//! A process of its own, not the readiness listener: it links libvirt.so, and the listener
//! must keep working while libvirtd is down or absent.

mod instance;
mod lv;
pub mod model;

use instance::{Instance, Shared};
use lv::Msg;
use model::Event;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};
use virt_systemd::config::Control;
use virt_systemd::notify::protocol::Readiness;
use virt_systemd::state::Store;
use zlink::Server;

/// How often the sockets are reconciled with libvirt besides (re)connects.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// How often readiness records are compared with what the domains carry.
const MIRROR_EVERY: Duration = Duration::from_secs(1);

/// A domain being served.
struct Served {
    name: String,
    events: broadcast::Sender<Event>,
    task: tokio::task::JoinHandle<()>,
}

struct Service {
    /// Where the sockets go: the same paths the hook registers (`Control::socket`).
    ctl: Control,
    conn: Shared,
    served: HashMap<uuid::Uuid, Served>,
    /// The listener's readiness records (the hook's state directory).
    store: Store,
    /// Readiness last written into each served domain's live metadata.
    mirrored: HashMap<uuid::Uuid, Readiness>,
    /// Domains whose metadata could not be written (said once).
    mirror_failed: BTreeSet<uuid::Uuid>,
}

/// Accept only root and the service's own user (root for the host's service, the session
/// user for a user's, whose machined runs as that user): the socket powers VMs off, and
/// machined does no check of its own. The directory (0700) already keeps others out; this
/// holds if someone loosens it.
#[derive(Debug)]
struct OwnerOnly {
    inner: tokio::net::UnixListener,
    domain: String,
    owner: u32,
}

impl zlink::Listener for OwnerOnly {
    type Socket = zlink::tokio::unix::Stream;

    async fn accept(&mut self) -> zlink::Result<Option<zlink::Connection<Self::Socket>>> {
        loop {
            match self.inner.accept().await {
                Ok((s, _)) => match s.peer_cred() {
                    Ok(c) if c.uid() == 0 || c.uid() == self.owner => {
                        return Ok(Some(zlink::tokio::unix::Stream::try_from(s)?.into()))
                    }
                    Ok(c) => warn!(
                        domain = %self.domain, "machine control: domain {}: refused a connection from uid {} (pid {:?})", self.domain,
                        c.uid(),
                        c.pid()
                    ),
                    Err(e) => {
                        warn!(domain = %self.domain, "machine control: domain {}: peer credentials: {e}", self.domain)
                    }
                },
                // Out of file descriptors and the like: keep serving once it passes.
                Err(e) => {
                    warn!(domain = %self.domain, "machine control: domain {}: accept: {e}", self.domain);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!("cannot remove {}: {e}", path.display()),
    }
}

impl Service {
    fn path(&self, uuid: &uuid::Uuid) -> PathBuf {
        self.ctl.socket(uuid)
    }

    /// Open the domain's socket and serve it, unless served already.
    fn start(&mut self, uuid: uuid::Uuid, name: String) {
        if self.served.contains_key(&uuid) {
            return;
        }
        let path = self.path(&uuid);
        remove(&path);
        let inner = match tokio::net::UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                warn!(domain = %name, "machine control: domain {}: cannot listen on {}: {e}", name, path.display());
                return;
            }
        };
        let (events, _) = broadcast::channel(64);
        let inst = Instance {
            uuid,
            name: name.clone(),
            conn: self.conn.clone(),
            events: events.clone(),
        };
        let listener = OwnerOnly {
            inner,
            domain: name.clone(),
            owner: virt_systemd::doctor::gather_uid(),
        };
        let d = name.clone();
        let task = tokio::task::spawn_local(async move {
            if let Err(e) = Server::new(listener, inst).run().await {
                warn!(domain = %d, "machine control: domain {}: server ended: {e}", d);
            }
        });
        info!(domain = %name, "machine control: domain {}: serving {}", name, path.display());
        self.served.insert(uuid, Served { name, events, task });
    }

    /// Close the domain's socket. Subscribers got the final event already; the server goes
    /// a moment later so that it can still write it.
    fn stop(&mut self, uuid: &uuid::Uuid) {
        remove(&self.path(uuid));
        self.mirrored.remove(uuid);
        self.mirror_failed.remove(uuid);
        if let Some(s) = self.served.remove(uuid) {
            info!(domain = %s.name, "machine control: domain {}: closed", s.name);
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                s.task.abort();
            });
        }
    }

    /// Write changed readiness records into the served domains' live metadata, so that
    /// readiness moves with a migrated domain (the hook on the destination restores it).
    async fn mirror(&mut self) {
        let Some(conn) = self.conn.lock().expect("connection lock").clone() else {
            return;
        };
        let todo: Vec<(uuid::Uuid, Readiness)> = self
            .served
            .keys()
            .filter_map(|u| {
                let r = self.store.load_readiness(&u.hyphenated().to_string())?;
                (self.mirrored.get(u) != Some(&r)).then_some((*u, r))
            })
            .collect();
        if todo.is_empty() {
            return;
        }
        let done = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(u, r)| {
                    let res = lv::set_readiness(&conn, &u, &r);
                    (u, r, res)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("libvirt thread");
        for (u, r, res) in done {
            let name = self
                .served
                .get(&u)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            match res {
                Ok(()) => {
                    self.mirror_failed.remove(&u);
                    self.mirrored.insert(u, r);
                }
                // Busy (a migration job), or gone: the next round tries again.
                Err(f) => {
                    if self.mirror_failed.insert(u) {
                        warn!(domain = %name, "machine control: domain {name}: cannot record readiness in its metadata: {}", f.msg);
                    }
                }
            }
        }
    }

    fn publish(&self, uuid: &uuid::Uuid, e: Event) {
        if let Some(s) = self.served.get(uuid) {
            let _ = s.events.send(e);
        }
    }

    /// Sockets for exactly the running domains; nothing else in the directory.
    async fn reconcile(&mut self) -> Result<(), lv::Failed> {
        let Some(conn) = self.conn.lock().expect("connection lock").clone() else {
            return Ok(());
        };
        let running = tokio::task::spawn_blocking(move || lv::running(&conn))
            .await
            .expect("libvirt thread")?;
        let names: HashMap<_, _> = running.iter().cloned().collect();
        let running: BTreeSet<_> = names.keys().copied().collect();
        let serving: BTreeSet<_> = self.served.keys().copied().collect();
        let entries: Vec<String> = std::fs::read_dir(&self.ctl.socket_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let plan = model::plan(&running, &serving, &entries);
        for u in &plan.stop {
            self.stop(u);
        }
        for e in &plan.remove {
            remove(&self.ctl.socket_dir.join(e));
        }
        for u in plan.start {
            self.start(u, names[&u].clone());
        }
        Ok(())
    }

    fn on_event(&mut self, uuid: uuid::Uuid, event: i32, detail: i32, name: Option<String>) {
        match event {
            // STARTED
            2 => self.start(uuid, name.unwrap_or_else(|| uuid.to_string())),
            _ => {
                let Some(e) = model::lifecycle(event, detail) else {
                    return;
                };
                let last = e.is_final();
                self.publish(&uuid, e);
                if last {
                    self.stop(&uuid);
                }
            }
        }
    }

    fn stop_all(&mut self) {
        let all: Vec<_> = self.served.keys().copied().collect();
        for u in all {
            remove(&self.path(&u));
        }
    }
}

/// Tell systemd we are ready (Type=notify), once the first reconciliation is done. Ours, not
/// the sd-notify crate: its 0.5 connects only to path names, not to an abstract
/// `NOTIFY_SOCKET` (`@…`).
fn sd_notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let r = if let Some(abs) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abs)
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = r {
        warn!("sd_notify: {e}");
    }
}

/// Prepare the socket directory: ours, root's, 0700.
fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Run the service until SIGTERM/SIGINT; an error only when it cannot start at all.
pub fn run(uri: &str, ctl: Control, state_dir: &Path) -> Result<(), String> {
    let pid_file = ctl.pid_file();
    let dir = &ctl.socket_dir;
    prepare_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A new socket is never reachable by others, not even between bind and chmod.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    lv::start_event_loop();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let store = Store::new(state_dir);
    let r = local.block_on(&rt, serve(uri.to_string(), ctl, store, &pid_file));
    let _ = std::fs::remove_file(&pid_file);
    r
}

/// Record our PID for `doctor` (world-readable: it says only that we run).
fn write_pid(path: &Path) {
    let text = format!("{}\n", std::process::id());
    if let Err(e) = virt_systemd::fsutil::write_atomic(path, text.as_bytes(), 0o644) {
        warn!("cannot write {}: {e}", path.display());
    }
}

async fn serve(uri: String, ctl: Control, store: Store, pid_file: &Path) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut svc = Service {
        ctl,
        conn: Arc::new(Mutex::new(None)),
        served: HashMap::new(),
        store,
        mirrored: HashMap::new(),
        mirror_failed: BTreeSet::new(),
    };
    let mut notified = false;
    let mut backoff = Duration::from_millis(250);
    let mut said_waiting = false;
    loop {
        // (Re)connect. Domains keep running while libvirtd is away; their sockets stay
        // and answer NotConnected until it is back.
        let (u, t) = (uri.clone(), tx.clone());
        let opened = tokio::task::spawn_blocking(move || lv::open(&u, &t))
            .await
            .expect("libvirt thread");
        let conn = match opened {
            Ok(c) => c,
            Err(f) => {
                if !said_waiting {
                    warn!(
                        "machine control: cannot connect to {uri} ({}); retrying",
                        f.msg
                    );
                    said_waiting = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = term.recv() => { svc.stop_all(); return Ok(()); }
                    _ = int.recv() => { svc.stop_all(); return Ok(()); }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        info!("machine control: connected to {uri}");
        said_waiting = false;
        backoff = Duration::from_millis(250);
        *svc.conn.lock().expect("connection lock") = Some(conn);
        if let Err(f) = svc.reconcile().await {
            warn!("machine control: listing domains: {}", f.msg);
        }
        if !notified {
            write_pid(pid_file);
            sd_notify_ready();
            notified = true;
        }
        // A safety net for an event lost or a socket that could not be bound: reconcile
        // now and then too (one libvirt list call).
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.tick().await;
        let mut mirror_tick = tokio::time::interval(MIRROR_EVERY);
        mirror_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = mirror_tick.tick() => svc.mirror().await,
                _ = tick.tick() => {
                    if let Err(f) = svc.reconcile().await {
                        warn!("machine control: listing domains: {}", f.msg);
                    }
                }
                m = rx.recv() => match m {
                    Some(Msg::Lifecycle { uuid, event, detail, name }) => {
                        svc.on_event(uuid, event, detail, name)
                    }
                    Some(Msg::Reboot(uuid)) => svc.publish(&uuid, Event::reset()),
                    Some(Msg::Closed(reason)) => {
                        warn!("machine control: libvirt connection closed (reason {reason}); reconnecting");
                        break;
                    }
                    None => return Err("event channel closed".into()),
                },
                _ = term.recv() => { svc.stop_all(); return Ok(()); }
                _ = int.recv() => { svc.stop_all(); return Ok(()); }
            }
        }
        let old = svc.conn.lock().expect("connection lock").take();
        // Closing a dead connection blocks on nothing but may take libvirt's lock: not here.
        tokio::task::spawn_blocking(move || drop(old));
    }
}
