//! `notify-listener`, `wait-ready`, `vsock-proxy`, `ssh`: readiness and SSH over vsock.
//! None of these needs libvirt: the hook's state files say which CID belongs to which
//! domain and whether it runs.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::notify::listener::{self, Limits, Shared, VsockListener};
use crate::state::{DomainState, Store};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `wait-ready` exit codes (also in the README).
pub const WAIT_TIMED_OUT: u8 = 15;
pub const WAIT_NOT_RUNNING: u8 = 16;
pub const WAIT_NOT_ENABLED: u8 = 17;

fn find(store: &Store, domain: &str) -> Option<DomainState> {
    store
        .all()
        .into_iter()
        .find(|s| s.domain == domain || s.uuid == domain)
}

/// Run the listener until killed. Uses systemd's sockets when socket-activated.
pub fn listener(cfg: &Config, port: Option<u32>, extra_hybrid: &[(String, PathBuf)]) -> Result<()> {
    let port = port.unwrap_or(cfg.notify_port());
    let limits = Limits {
        idle: Duration::from_millis(cfg.notify.idle_ms),
        total: Duration::from_millis(cfg.notify.timeout_ms),
        ..Limits::default()
    };
    let shared = Shared::new(Store::new(&cfg.hook.state_dir), limits);
    let mut hybrid_map: Vec<(String, PathBuf)> = cfg
        .notify
        .hybrid
        .iter()
        .map(|(d, p)| (d.clone(), listener::hybrid_path(p, port)))
        .collect();
    hybrid_map.extend(
        extra_hybrid
            .iter()
            .map(|(d, p)| (d.clone(), listener::hybrid_path(p, port))),
    );
    let mut vsock = Vec::new();
    let mut hybrid = Vec::new();
    let fds = listener::listen_fds();
    let activated = !fds.is_empty();
    for fd in fds {
        match listener::socket_family(fd.as_raw_fd()) {
            Ok(libc::AF_VSOCK) => vsock.push(VsockListener::from_fd(fd)),
            Ok(libc::AF_UNIX) => {
                let l = std::os::unix::net::UnixListener::from(fd);
                let path = l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf));
                match hybrid_map.iter().find(|(_, p)| Some(p) == path.as_ref()) {
                    Some((d, _)) => hybrid.push((l, d.clone())),
                    None => tracing::warn!(
                        "socket-activated UNIX socket {path:?} matches no [notify.hybrid] domain; ignored"
                    ),
                }
            }
            other => tracing::warn!("socket-activated fd of unexpected family {other:?}; ignored"),
        }
    }
    if !activated {
        vsock.push(
            VsockListener::bind(port)
                .map_err(|e| Error::Invalid(format!("cannot listen on vsock port {port}: {e}")))?,
        );
        for (d, p) in &hybrid_map {
            let l = listener::bind_hybrid(p).map_err(|e| Error::Write {
                path: p.clone(),
                source: e,
            })?;
            hybrid.push((l, d.clone()));
        }
    }
    tracing::info!(
        "listening for readiness on vsock port {port} ({} vsock, {} hybrid socket(s){})",
        vsock.len(),
        hybrid.len(),
        if activated { ", socket-activated" } else { "" }
    );
    listener::serve(shared, vsock, hybrid).map_err(|e| Error::Invalid(e.to_string()))
}

/// Block until the domain's guest reported READY=1 (or, with `ssh`, ssh-access.target)
/// in its current boot. Returns the exit code.
pub fn wait_ready(cfg: &Config, domain: &str, timeout: Option<f64>, ssh: bool) -> u8 {
    let store = Store::new(&cfg.hook.state_dir);
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    let mut announced = false;
    loop {
        let Some(st) = find(&store, domain) else {
            eprintln!("virt-systemd: {domain} is not running (no state from the hook)");
            return WAIT_NOT_RUNNING;
        };
        if !st.enabled || st.notify_port.is_none() {
            eprintln!(
                "virt-systemd: {domain} was not started with readiness notification \
                 (virt-systemd enable/rewrite --notify, then restart it)"
            );
            return WAIT_NOT_ENABLED;
        }
        if let Some(r) = store.load_readiness(&st.uuid) {
            if (ssh && r.ssh()) || (!ssh && r.ready) {
                if let Some(s) = &r.status {
                    println!("{s}");
                }
                return 0;
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "virt-systemd: {domain}: timed out waiting for {}",
                if ssh { "ssh-access.target" } else { "READY=1" }
            );
            return WAIT_TIMED_OUT;
        }
        if !announced {
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copy `from` → `to` as it comes, until EOF: every read is written and flushed before
/// the next read. Not `std::io::copy`: on Linux it moves socket → pipe with splice(2), and
/// on the lab's host kernel (6.18) the pipe's reader then hung — ssh's (even non-blocking)
/// read of our stdout sat uninterruptibly in the kernel until the proxy exited, so ssh
/// sessions over a hybrid-vsock backend stalled after a few packets. Plain read/write
/// also keeps Rust's line-buffered stdout out of a binary stream.
fn pump(mut from: impl Read, mut to: impl Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

/// fd 0 or 1 as an unbuffered file, left open when dropped.
fn stdio_file(fd: i32) -> std::mem::ManuallyDrop<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: fds 0 and 1 stay open for the whole process; ManuallyDrop never closes them.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Copy stdin → `w` and `r` → stdout until both directions end.
fn splice(
    r: impl Read + Send + 'static,
    w: impl Write + Send + 'static,
    half_close: impl FnOnce() + Send + 'static,
) -> Result<()> {
    let up = std::thread::spawn(move || {
        let _ = pump(&*stdio_file(0), w);
        half_close();
    });
    let res = pump(r, &*stdio_file(1));
    drop(up); // the guest closed: we are done, whatever stdin still holds
    res.map_err(|e| Error::Write {
        path: "<stdout>".into(),
        source: e,
    })
}

/// `vsock-proxy`: stdio ↔ guest port, for ssh's ProxyCommand.
pub fn vsock_proxy(cid: Option<u32>, uds: Option<&Path>, port: u32) -> Result<()> {
    let io = |e: std::io::Error| Error::Invalid(format!("cannot reach guest port {port}: {e}"));
    if let Some(uds) = uds {
        let s = listener::hybrid_connect(uds, port).map_err(io)?;
        let w = s.try_clone().map_err(io)?;
        // No half-close at stdin's end: vhost-device-vsock (0.3) takes it for a full close
        // and the guest's reply would be lost (seen in the lab). The guest closes.
        return splice(s, w, || {});
    }
    let cid = cid.ok_or_else(|| Error::invalid("vsock-proxy needs a CID or --uds PATH"))?;
    let fd: OwnedFd = listener::vsock_connect(cid, port).map_err(io)?;
    let raw = fd.as_raw_fd();
    let f = std::fs::File::from(fd);
    let w = f.try_clone().map_err(io)?;
    splice(f, w, move || {
        // SAFETY: raw stays open while `f` lives, which outlives this call's effect.
        unsafe { libc::shutdown(raw, libc::SHUT_WR) };
    })
}

/// `ssh DOMAIN [-- ARGS]`: exec ssh to the guest over vsock.
pub fn ssh(cfg: &Config, domain: &str, args: &[OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let store = Store::new(&cfg.hook.state_dir);
    let st = find(&store, domain).ok_or_else(|| {
        Error::invalid(format!("{domain} is not running (no state from the hook)"))
    })?;
    let me = std::env::current_exe().map_err(|e| Error::invalid(e.to_string()))?;
    let (host, proxy, fdpass) = if let Some(uds) = cfg.notify.hybrid.get(&st.domain) {
        (
            format!("vsock-mux/{}", st.domain),
            format!("{} vsock-proxy --uds {} 22", me.display(), uds.display()),
            false,
        )
    } else {
        let cid = st.vsock_cid.ok_or_else(|| {
            Error::invalid(format!(
                "{domain} has no vsock CID (start it with a vsock device: virt-systemd enable --vsock)"
            ))
        })?;
        let sd = Path::new("/usr/lib/systemd/systemd-ssh-proxy");
        if sd.exists() {
            (
                format!("vsock/{cid}"),
                format!("{} vsock/{cid} 22", sd.display()),
                true,
            )
        } else {
            (
                format!("vsock/{cid}"),
                format!("{} vsock-proxy {cid} 22", me.display()),
                false,
            )
        }
    };
    let user_given = args.iter().any(|a| a == "-l");
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg("-o")
        .arg(format!(
            "ProxyUseFdpass={}",
            if fdpass { "yes" } else { "no" }
        ))
        .arg("-o")
        .arg(format!("HostKeyAlias={host}"))
        .arg("-o")
        .arg("CheckHostIP=no");
    let (opts, rest) = split_ssh_args(args);
    cmd.args(opts);
    cmd.arg(if user_given {
        host.clone()
    } else {
        format!("root@{host}")
    });
    cmd.args(rest);
    let e = cmd.exec();
    Err(Error::invalid(format!("cannot run ssh: {e}")))
}

/// Split ssh arguments into options (before the destination) and the remote command.
fn split_ssh_args(args: &[OsString]) -> (&[OsString], &[OsString]) {
    // ssh options that take a value (ssh(1) SYNOPSIS).
    const VALUED: &str = "BbcDEeFIiJLlmOoPpQRSWw";
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            return (&args[..i], &args[i + 1..]);
        }
        if !a.starts_with('-') || a.len() < 2 {
            break;
        }
        // "-l root" takes the next word; "-lroot" and flag clusters ("-vvt") do not.
        let last = a.chars().last().unwrap_or('-');
        let single = a.len() == 2;
        i += 1;
        if single && VALUED.contains(last) {
            i += 1;
        }
    }
    let i = i.min(args.len());
    (&args[..i], &args[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn ssh_arguments() {
        let a = v(&["-o", "Foo=bar", "-l", "admin", "-t", "systemctl", "status"]);
        let (o, r) = split_ssh_args(&a);
        assert_eq!(o, &v(&["-o", "Foo=bar", "-l", "admin", "-t"])[..]);
        assert_eq!(r, &v(&["systemctl", "status"])[..]);
        let a = v(&["uptime", "-p"]);
        let (o, r) = split_ssh_args(&a);
        assert!(o.is_empty());
        assert_eq!(r, &a[..]);
        let a = v(&["-v", "--", "-weird"]);
        let (o, r) = split_ssh_args(&a);
        assert_eq!(o, &v(&["-v"])[..]);
        assert_eq!(r, &v(&["-weird"])[..]);
    }
}
