//! The host's readiness listener: accepts guests' sd_notify connections over AF_VSOCK
//! (peer CID → domain via the hook's state) and over hybrid-vsock UNIX sockets of
//! user-space vsock backends (socket path → domain). Every connection is bounded in size,
//! time and number, so one guest cannot hurt another.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};
use virt_systemd_core::notify::protocol::{self, Readiness, MESSAGE_MAX};
use virt_systemd_hook::logging::MSG_READY;
use virt_systemd_hook::state::{DomainState, Store};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole connection, first byte to close.
    pub total: Duration,
    /// Quiet time after data that ends a message (guests whose backend never forwards
    /// a half-close would otherwise hang us).
    pub idle: Duration,
    pub max_connections: usize,
    pub max_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: Duration::from_secs(5),
            idle: Duration::from_millis(250),
            max_connections: 64,
            max_per_peer: 4,
        }
    }
}

/// Who is on the other end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    Vsock {
        cid: u32,
        port: u32,
    },
    /// Hybrid vsock: the domain is known from the socket it came in on.
    Hybrid {
        domain: String,
    },
}

impl Peer {
    fn key(&self) -> String {
        match self {
            Peer::Vsock { cid, .. } => format!("cid {cid}"),
            Peer::Hybrid { domain } => format!("hybrid {domain}"),
        }
    }
}

/// A stream we can read with a timeout (UNIX, TCP in tests, vsock).
pub trait Conn: Read + Send {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()>;
}

impl Conn for UnixStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl Conn for std::net::TcpStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// A connected AF_VSOCK stream socket.
pub struct VsockStream(OwnedFd);

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: valid fd and buffer for the call's duration.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Conn for VsockStream {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros().max(1) as libc::suseconds_t,
        };
        // SAFETY: valid fd, option value of the right type and size.
        let r = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Read one message: until EOF, or until the peer goes quiet after sending something,
/// or the total deadline; never more than MESSAGE_MAX bytes. `None`: nothing usable.
pub fn read_message(c: &mut dyn Conn, l: &Limits) -> std::io::Result<Option<Vec<u8>>> {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = l.total.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        c.set_timeout(if buf.is_empty() {
            left
        } else {
            l.idle.min(left)
        })?;
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if buf.len() + n > MESSAGE_MAX {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("message longer than {MESSAGE_MAX} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((!buf.is_empty()).then_some(buf))
}

/// Shared by all connections: where state lives, and the counters that bound them.
pub struct Shared {
    pub store: Store,
    pub limits: Limits,
    active: Mutex<HashMap<String, usize>>,
    total: Mutex<usize>,
    /// Serialises read-modify-write of readiness files.
    write: Mutex<()>,
}

impl Shared {
    pub fn new(store: Store, limits: Limits) -> Arc<Shared> {
        Arc::new(Shared {
            store,
            limits,
            active: Mutex::new(HashMap::new()),
            total: Mutex::new(0),
            write: Mutex::new(()),
        })
    }

    fn resolve(&self, peer: &Peer) -> Option<DomainState> {
        let all = self.store.all();
        match peer {
            Peer::Vsock { cid, .. } => all.into_iter().find(|s| s.vsock_cid == Some(*cid)),
            Peer::Hybrid { domain } => all.into_iter().find(|s| &s.domain == domain),
        }
    }

    /// Take a slot for `peer`; `None` when over a limit.
    fn admit(self: &Arc<Self>, peer: &Peer) -> Option<Slot> {
        let mut total = self.total.lock().unwrap();
        let mut active = self.active.lock().unwrap();
        let n = active.entry(peer.key()).or_default();
        if *total >= self.limits.max_connections || *n >= self.limits.max_per_peer {
            return None;
        }
        *n += 1;
        *total += 1;
        Some(Slot {
            shared: Arc::clone(self),
            key: peer.key(),
        })
    }
}

struct Slot {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.shared.total.lock().unwrap() -= 1;
        if let Some(n) = self.shared.active.lock().unwrap().get_mut(&self.key) {
            *n -= 1;
        }
    }
}

/// What became of one connection (for logs and tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Applied { domain: String, ready: bool },
    UnprivilegedPort(u32),
    UnknownPeer,
    Empty,
    Rejected(String),
}

/// Handle one accepted connection completely.
pub fn handle(shared: &Shared, mut c: Box<dyn Conn>, peer: &Peer) -> Handled {
    // Only root in the guest can bind ports below 1024.
    if let Peer::Vsock { port, .. } = peer {
        if *port >= 1024 {
            return Handled::UnprivilegedPort(*port);
        }
    }
    let Some(st) = shared.resolve(peer) else {
        return Handled::UnknownPeer;
    };
    let msg = match read_message(c.as_mut(), &shared.limits) {
        Ok(Some(m)) => m,
        Ok(None) => return Handled::Empty,
        Err(e) => return Handled::Rejected(e.to_string()),
    };
    let parsed = protocol::parse(&msg);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let _g = shared.write.lock().unwrap();
    let mut r: Readiness = shared.store.load_readiness(&st.uuid).unwrap_or_default();
    let was_ready = r.ready;
    protocol::apply(&mut r, &parsed.known, now);
    if let Err(e) = shared.store.save_readiness(&st.uuid, &r) {
        warn!(domain = %st.domain, uuid = %st.uuid, "cannot record readiness: {e}");
    }
    // Close only once recorded: a closed connection means the message took effect.
    drop(c);
    if r.ready && !was_ready {
        info!(domain = %st.domain, uuid = %st.uuid, message_id = MSG_READY,
              status = r.status.as_deref().unwrap_or(""), "guest reports READY=1");
    }
    if parsed.malformed > 0 {
        warn!(domain = %st.domain, "ignored {} malformed notification line(s)", parsed.malformed);
    }
    Handled::Applied {
        domain: st.domain,
        ready: r.ready,
    }
}

fn log_handled(peer: &Peer, h: &Handled) {
    match h {
        Handled::Applied { .. } | Handled::Empty => {}
        Handled::UnprivilegedPort(p) => {
            warn!(peer = ?peer, "rejected notification from unprivileged port {p}")
        }
        Handled::UnknownPeer => warn!(peer = ?peer, "notification from an unknown peer dropped"),
        Handled::Rejected(e) => warn!(peer = ?peer, "notification rejected: {e}"),
    }
}

/// Spawn a handler thread for a connection if limits allow; drop it otherwise.
pub fn dispatch(shared: &Arc<Shared>, c: Box<dyn Conn>, peer: Peer) {
    let Some(slot) = shared.admit(&peer) else {
        warn!(peer = ?peer, "too many notification connections; dropped");
        return;
    };
    let sh = Arc::clone(shared);
    std::thread::spawn(move || {
        let h = handle(&sh, c, &peer);
        log_handled(&peer, &h);
        drop(slot);
    });
}

/// A bound AF_VSOCK listening socket.
pub struct VsockListener(OwnedFd);

impl VsockListener {
    pub fn bind(port: u32) -> std::io::Result<VsockListener> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        addr.svm_port = port;
        // SAFETY: addr is a valid sockaddr_vm of the given size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if r < 0 || unsafe { libc::listen(fd.as_raw_fd(), 64) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(VsockListener(fd))
    }

    pub fn from_fd(fd: OwnedFd) -> VsockListener {
        VsockListener(fd)
    }

    pub fn accept(&self) -> std::io::Result<(VsockStream, Peer)> {
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        // SAFETY: addr/len describe a writable sockaddr_vm.
        let fd = unsafe {
            libc::accept4(
                self.0.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_vm).cast(),
                &mut len,
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: accept4 returned a new fd we own.
        let s = VsockStream(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok((
            s,
            Peer::Vsock {
                cid: addr.svm_cid,
                port: addr.svm_port,
            },
        ))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The port actually bound (useful with VMADDR_PORT_ANY).
    pub fn port(&self) -> std::io::Result<u32> {
        sock_vsock_port(self.0.as_raw_fd())
    }
}

fn sock_vsock_port(fd: RawFd) -> std::io::Result<u32> {
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: addr/len describe a writable sockaddr_vm.
    let r =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_vm).cast(), &mut len) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(addr.svm_port)
}

/// Address family of a socket fd.
pub fn socket_family(fd: RawFd) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v/len describe a writable int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// Listening sockets passed by systemd (`LISTEN_PID`/`LISTEN_FDS`), taken once.
pub fn listen_fds() -> Vec<OwnedFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !pid_ok {
        return vec![];
    }
    // SAFETY: systemd hands us fds 3..3+n, which nothing else in this process owns.
    (3..3 + n)
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Run accept loops until an error on every listener. `hybrid` maps UNIX socket paths
/// (`<uds-path>_PORT`) to domain names.
pub fn serve(
    shared: Arc<Shared>,
    vsock: Vec<VsockListener>,
    hybrid: Vec<(UnixListener, String)>,
) -> std::io::Result<()> {
    let mut threads = Vec::new();
    for l in vsock {
        let sh = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || loop {
            match l.accept() {
                Ok((s, peer)) => dispatch(&sh, Box::new(s), peer),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("vsock accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }
    for (l, domain) in hybrid {
        let sh = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || loop {
            match l.accept() {
                Ok((s, _)) => dispatch(
                    &sh,
                    Box::new(s),
                    Peer::Hybrid {
                        domain: domain.clone(),
                    },
                ),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("accept on hybrid socket for {domain} failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Bind a hybrid-vsock UNIX listener at `path`, replacing a stale socket file.
pub fn bind_hybrid(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let l = UnixListener::bind(path)?;
    // The backend runs as another user (QEMU's); let it connect.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// `<uds-path>_PORT`, where a hybrid-vsock backend connects for guest port PORT.
pub fn hybrid_path(uds: &std::path::Path, port: u32) -> PathBuf {
    let mut s = uds.as_os_str().to_owned();
    s.push(format!("_{port}"));
    PathBuf::from(s)
}

/// Connect to `cid:port` over AF_VSOCK (used by `vsock-proxy`).
pub fn vsock_connect(cid: u32, port: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: addr is a valid sockaddr_vm of the given size.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Reach guest port `port` through a hybrid-vsock backend's UNIX socket: send
/// `CONNECT PORT`, expect `OK …`. Returns the connected stream.
pub fn hybrid_connect(uds: &std::path::Path, port: u32) -> std::io::Result<UnixStream> {
    use std::io::Write;
    let mut s = UnixStream::connect(uds)?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Byte by byte: what follows the reply line already belongs to the guest.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 128 {
        if s.read(&mut b)? == 0 {
            break;
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    s.set_read_timeout(None)?;
    if !line.starts_with(b"OK ") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!(
                "vsock backend refused CONNECT {port}: {:?}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    Ok(s)
}
