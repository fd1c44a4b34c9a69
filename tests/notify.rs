//! The readiness listener's protocol and state logic over real sockets: AF_UNIX (the
//! hybrid-vsock transport user-space backends use), loopback TCP, and a real AF_VSOCK bind.
//! Bad input, floods, slow peers and peers that never half-close must not hurt others.
//!
//! The listener closes a connection only once its message took effect, so a closed
//! connection is the observable condition to wait for; no test sleeps and hopes. Limits
//! that a test does not exercise are generous ([`roomy`]), so a test thread descheduled
//! between connecting and writing cannot lose its message to a deadline.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use virt_systemd::notify::listener::{self, bind_hybrid, handle, Handled, Limits, Peer, Shared};
use virt_systemd::state::{DomainState, Store};

struct Lab {
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
}

const U1: &str = "11111111-2222-4333-8444-555555555555";
const U2: &str = "21111111-2222-4333-8444-555555555555";

fn lab(limits: Limits) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    for (d, u, cid) in [("g1", U1, 42), ("g2", U2, 43)] {
        store
            .save(&DomainState {
                domain: d.into(),
                uuid: u.into(),
                vsock_cid: Some(cid),
                ..Default::default()
            })
            .unwrap();
    }
    let shared = Shared::new(Store::new(dir.path()), limits);
    Lab { dir, shared }
}

/// Limits no test runs into unless it means to: every peer here half-closes after its
/// message, so these only bound a hang.
fn roomy() -> Limits {
    Limits {
        total: Duration::from_secs(60),
        idle: Duration::from_secs(10),
        max_connections: 64,
        max_per_peer: 16,
    }
}

/// How long a test waits for what must happen: only bounds a hang.
const HANG: Duration = Duration::from_secs(60);

/// Start hybrid listeners for g1 and g2 (and "ghost", which has no state).
fn serve(l: &Lab) -> Vec<std::path::PathBuf> {
    let mut socks = vec![];
    let mut paths = vec![];
    for d in ["g1", "g2", "ghost"] {
        let p = listener::hybrid_path(&l.dir.path().join(format!("{d}.vsock")), 8742);
        socks.push((bind_hybrid(&p).unwrap(), d.to_string()));
        paths.push(p);
    }
    let sh = Arc::clone(&l.shared);
    std::thread::spawn(move || listener::serve(sh, vec![], socks));
    paths
}

fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < HANG {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn store(l: &Lab) -> Store {
    Store::new(l.dir.path())
}

#[test]
fn hybrid_socket_records_readiness_for_the_right_domain() {
    let l = lab(roomy());
    let p = serve(&l);
    let mut s = UnixStream::connect(&p[0]).unwrap();
    s.write_all(b"READY=1\nSTATUS=Startup finished\nX_SYSTEMD_UNIT_ACTIVE=ssh-access.target\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = vec![];
    s.read_to_end(&mut rest).unwrap(); // the listener closes after the message
    assert!(wait_for(|| store(&l)
        .load_readiness(U1)
        .is_some_and(|r| r.ready)));
    let r = store(&l).load_readiness(U1).unwrap();
    assert_eq!(r.status.as_deref(), Some("Startup finished"));
    assert!(r.ssh());
    assert!(
        store(&l).load_readiness(U2).is_none(),
        "other domain untouched"
    );
}

#[test]
fn peer_that_never_half_closes_is_served_after_idle() {
    // Idle is what ends this message: short. The total deadline is far beyond the read
    // timeout below, so a close by it (not by idle) fails the test instead of passing it.
    let l = lab(Limits {
        idle: Duration::from_millis(150),
        total: Duration::from_secs(120),
        ..roomy()
    });
    let p = serve(&l);
    let mut s = UnixStream::connect(&p[1]).unwrap();
    // One write: the message arrives whole, so idle cannot cut it.
    s.write_all(b"READY=1\nSTATUS=no half-close").unwrap();
    // Like the vhost-device-vsock bug: no shutdown(SHUT_WR); we wait for the host to close.
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf)
            .expect("host closed the connection after idle"),
        0
    );
    let r = store(&l).load_readiness(U2).unwrap();
    assert!(r.ready);
    assert_eq!(r.status.as_deref(), Some("no half-close"));
}

#[test]
fn garbage_oversize_and_unknown_peers_change_nothing() {
    // Generous idle: the oversize message goes out in several writes, and a pause between
    // them must not end it early (READY=1 would then apply).
    let l = lab(roomy());
    let p = serve(&l);
    // Garbage: binary noise with no assignments.
    let mut s = UnixStream::connect(&p[0]).unwrap();
    s.write_all(&[0xff, 0, 1, 2, b'\n', b'=', b'\n', 0x80])
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = s.read_to_end(&mut vec![]);
    // Oversize: more than the message limit.
    let mut s = UnixStream::connect(&p[0]).unwrap();
    let big = vec![b'A'; 64 * 1024];
    let _ = s.write_all(b"READY=1\nSTATUS=");
    let _ = s.write_all(&big);
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.read_to_end(&mut vec![]);
    // Unknown peer: a socket for a domain the hook never recorded.
    // (it may be closed on us before we finish writing)
    let mut s = UnixStream::connect(&p[2]).unwrap();
    let _ = s.write_all(b"READY=1\n");
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.read_to_end(&mut vec![]);
    // Each connection above is closed: the listener is done with it (it closes only after
    // recording), so whatever it was going to apply is applied.
    let r = store(&l).load_readiness(U1).unwrap_or_default();
    assert!(!r.ready, "oversized message must not apply");
    // Then a proper message still works.
    let mut s = UnixStream::connect(&p[0]).unwrap();
    s.write_all(b"READY=1\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let _ = s.read_to_end(&mut vec![]);
    assert!(wait_for(|| store(&l)
        .load_readiness(U1)
        .is_some_and(|r| r.ready)));
}

#[test]
fn slow_and_flooding_peers_do_not_starve_others() {
    // The total deadline is under test (it ends silent peers): a few seconds, long enough
    // that g2's connect-then-write cannot run into it.
    let l = lab(Limits {
        total: Duration::from_secs(5),
        max_connections: 16,
        max_per_peer: 2,
        ..roomy()
    });
    let p = serve(&l);
    // g1 opens many silent connections: at most max_per_peer are held, the rest dropped.
    let hogs: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&p[0]).unwrap())
        .collect();
    // The flood has been dealt with once the listener closed all but max_per_peer of them.
    let t = Instant::now();
    let closed = |h: &UnixStream| {
        h.set_nonblocking(true).unwrap();
        matches!((&*h).read(&mut [0u8; 1]), Ok(0))
    };
    while hogs.iter().filter(|h| closed(h)).count() < hogs.len() - 2 {
        assert!(t.elapsed() < HANG, "the listener never dropped the flood");
        std::thread::sleep(Duration::from_millis(20));
    }
    // g2 still gets through.
    let mut s = UnixStream::connect(&p[1]).unwrap();
    s.write_all(b"READY=1\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(wait_for(|| store(&l)
        .load_readiness(U2)
        .is_some_and(|r| r.ready)));
    // Silent peers are cut off by the total deadline (a read timeout here is a failure).
    let mut h = hogs.into_iter().next().unwrap();
    h.set_nonblocking(false).unwrap();
    h.set_read_timeout(Some(HANG)).unwrap();
    assert_eq!(
        h.read(&mut [0u8; 1]).expect("host closed the silent peer"),
        0
    );
}

#[test]
fn vsock_rules_over_loopback_tcp() {
    // The AF_VSOCK peer rules, exercised through the transport-independent handler.
    let l = lab(roomy());
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let send = |msg: &'static [u8]| {
        std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(msg).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        });
        Box::new(tcp.accept().unwrap().0)
    };
    let h = handle(
        &l.shared,
        send(b"READY=1\n"),
        &Peer::Vsock {
            cid: 42,
            port: 5000,
        },
    );
    assert_eq!(h, Handled::UnprivilegedPort(5000));
    let h = handle(
        &l.shared,
        send(b"READY=1\n"),
        &Peer::Vsock { cid: 99, port: 1 },
    );
    assert_eq!(h, Handled::UnknownPeer);
    assert!(store(&l).load_readiness(U1).is_none());
    let h = handle(
        &l.shared,
        send(b"STATUS=hi\nREADY=1\n"),
        &Peer::Vsock {
            cid: 42,
            port: 1023,
        },
    );
    assert_eq!(
        h,
        Handled::Applied {
            domain: "g1".into(),
            ready: true
        }
    );
    let h = handle(&l.shared, send(b""), &Peer::Vsock { cid: 43, port: 7 });
    assert_eq!(h, Handled::Empty);
}

#[test]
fn binds_a_real_af_vsock_socket() {
    // No vsock transport connects here, but binding and listening must work (the
    // vsock_loopback/vhost modules are absent: say so rather than pass silently).
    match listener::VsockListener::bind(u32::MAX) {
        Ok(l) => {
            let port = l.port().unwrap();
            assert_ne!(port, u32::MAX, "kernel assigned a port");
        }
        Err(e) => panic!("AF_VSOCK bind failed on this host: {e}"),
    }
}
