//! `notify-listener`, `wait-ready`, `vsock-proxy`, `ssh`: readiness and SSH over vsock.
//! None of these needs libvirt: the hook's state files say which CID belongs to which
//! domain and whether it runs.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::notify::listener::{self, Limits, Shared, VsockListener};
use crate::scope::Scope;
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
/// `kernel_vsock`: also listen on AF_VSOCK (the host's listener; a session user's serves
/// only its backends' hybrid sockets, and the host's already holds the port).
pub fn listener(
    cfg: &Config,
    port: Option<u32>,
    extra_hybrid: &[(String, PathBuf)],
    kernel_vsock: bool,
) -> Result<()> {
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
        if kernel_vsock {
            vsock.push(
                VsockListener::bind(port).map_err(|e| {
                    Error::Invalid(format!("cannot listen on vsock port {port}: {e}"))
                })?,
            );
        }
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

/// How `ssh` reaches a guest: the name ssh knows it by, and the ProxyCommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshRoute {
    /// `vsock/CID`, or `vsock-mux/DOMAIN` on a hybrid-vsock backend (systemd's names).
    pub host: String,
    /// The ProxyCommand, its words already quoted for ssh (see [`proxy_word`]).
    pub proxy: String,
    /// The proxy passes ssh a connected fd (systemd-ssh-proxy) instead of relaying.
    pub fdpass: bool,
}

/// One word of a ProxyCommand: ssh expands `%` tokens in it, then runs it with
/// `$SHELL -c`, so `%` is doubled and the word single-quoted.
pub fn proxy_word(w: &str) -> String {
    format!("'{}'", w.replace('%', "%%").replace('\'', r"'\''"))
}

/// The route to a running domain's port 22.
pub fn ssh_route(
    cfg: &Config,
    st: &DomainState,
    me: &Path,
    sd_proxy: Option<&Path>,
) -> Result<SshRoute> {
    let me = proxy_word(&me.to_string_lossy());
    if let Some(uds) = cfg.notify.hybrid.get(&st.domain) {
        return Ok(SshRoute {
            host: format!("vsock-mux/{}", st.domain),
            proxy: format!(
                "{me} vsock-proxy --uds {} 22",
                proxy_word(&uds.to_string_lossy())
            ),
            fdpass: false,
        });
    }
    let cid = st.vsock_cid.ok_or_else(|| {
        Error::invalid(format!(
            "{} has no vsock CID (start it with a vsock device: virt-systemd enable --vsock)",
            st.domain
        ))
    })?;
    Ok(match sd_proxy {
        Some(sd) => SshRoute {
            host: format!("vsock/{cid}"),
            proxy: format!("{} vsock/{cid} 22", proxy_word(&sd.to_string_lossy())),
            fdpass: true,
        },
        None => SshRoute {
            host: format!("vsock/{cid}"),
            proxy: format!("{me} vsock-proxy {cid} 22"),
            fdpass: false,
        },
    })
}

/// ssh's arguments: the user's options first (ssh keeps the first value it gets for an
/// option, so theirs win), then ours, the destination, the remote command. Host keys are
/// neither checked nor recorded, as systemd's own ssh_config for `vsock/*` does: a CID or a
/// backend socket names whichever guest runs there now, not a host.
pub fn ssh_argv(route: &SshRoute, args: &[OsString]) -> Vec<OsString> {
    let (opts, rest) = split_ssh_args(args);
    let mut v: Vec<OsString> = opts.to_vec();
    for o in [
        format!("ProxyCommand={}", route.proxy),
        format!("ProxyUseFdpass={}", if route.fdpass { "yes" } else { "no" }),
        format!("HostKeyAlias={}", route.host),
        "CheckHostIP=no".into(),
        "StrictHostKeyChecking=no".into(),
        "UserKnownHostsFile=/dev/null".into(),
    ] {
        v.push("-o".into());
        v.push(o.into());
    }
    v.push(if user_option(opts) {
        route.host.clone().into()
    } else {
        format!("root@{}", route.host).into()
    });
    v.extend(rest.iter().cloned());
    v
}

/// `ssh DOMAIN [-- ARGS]`: exec ssh to the guest over vsock.
pub fn ssh(cfg: &Config, scope: &Scope, domain: &str, args: &[OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let store = Store::new(&cfg.hook.state_dir);
    let st = find(&store, domain).ok_or_else(|| {
        Error::invalid(format!("{domain} is not running (no state from the hook)"))
    })?;
    // A session domain on the user unit's backend needs no [notify.hybrid] entry.
    let mut cfg = cfg.clone();
    if let Some(dir) = scope.backend_dir(&st.domain) {
        let uds = crate::scope::backend_uds(&dir);
        if !cfg.notify.hybrid.contains_key(&st.domain) && uds.exists() {
            cfg.notify.hybrid.insert(st.domain.clone(), uds);
        }
    }
    let cfg = &cfg;
    let me = std::env::current_exe().map_err(|e| Error::invalid(e.to_string()))?;
    let sd = Path::new("/usr/lib/systemd/systemd-ssh-proxy");
    let route = ssh_route(cfg, &st, &me, sd.exists().then_some(sd))?;
    let e = std::process::Command::new("ssh")
        .args(ssh_argv(&route, args))
        .exec();
    Err(Error::invalid(format!("cannot run ssh: {e}")))
}

/// Whether ssh options name the user (`-l USER`, `-lUSER`, `-o User=…`): then the
/// destination carries no `root@`, which would override them.
fn user_option(opts: &[OsString]) -> bool {
    let mut prev_o = false;
    opts.iter().any(|a| {
        let a = a.to_string_lossy();
        let o_value = if prev_o {
            Some(&a[..])
        } else {
            a.strip_prefix("-o")
        };
        prev_o = a == "-o";
        a.starts_with("-l")
            || o_value.is_some_and(|v| {
                let v = v.trim_start().to_ascii_lowercase();
                ["user=", "user ", "user\t"]
                    .iter()
                    .any(|p| v.starts_with(p))
            })
    })
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

    fn state(domain: &str, cid: Option<u32>) -> DomainState {
        DomainState {
            domain: domain.into(),
            uuid: "0b7d5c3e-2f41-4a6b-9c8d-7e6f5a4b3c2d".into(),
            vsock_cid: cid,
            ..Default::default()
        }
    }

    #[test]
    fn proxy_words_survive_shell_and_percent_expansion() {
        assert_eq!(
            proxy_word("/usr/bin/virt-systemd"),
            "'/usr/bin/virt-systemd'"
        );
        assert_eq!(proxy_word("/a b/it's 100%"), r"'/a b/it'\''s 100%%'");
    }

    #[test]
    fn routes() {
        let me = Path::new("/opt/my tools/virt-systemd");
        let mut cfg = Config::default();
        cfg.notify
            .hybrid
            .insert("web".into(), "/run/vuv/vm.vsock".into());
        let r = ssh_route(&cfg, &state("web", Some(7)), me, None).unwrap();
        assert_eq!(r.host, "vsock-mux/web");
        assert_eq!(
            r.proxy,
            "'/opt/my tools/virt-systemd' vsock-proxy --uds '/run/vuv/vm.vsock' 22"
        );
        assert!(!r.fdpass);
        let r = ssh_route(&cfg, &state("db", Some(7)), me, None).unwrap();
        assert_eq!(r.host, "vsock/7");
        assert_eq!(r.proxy, "'/opt/my tools/virt-systemd' vsock-proxy 7 22");
        let sd = Path::new("/usr/lib/systemd/systemd-ssh-proxy");
        let r = ssh_route(&cfg, &state("db", Some(7)), me, Some(sd)).unwrap();
        assert_eq!(r.proxy, "'/usr/lib/systemd/systemd-ssh-proxy' vsock/7 22");
        assert!(r.fdpass);
        assert!(ssh_route(&cfg, &state("db", None), me, None).is_err());
    }

    #[test]
    fn ssh_argv_user_options_first_no_host_key_prompt() {
        let route = SshRoute {
            host: "vsock/7".into(),
            proxy: "'p' vsock-proxy 7 22".into(),
            fdpass: false,
        };
        let a = ssh_argv(
            &route,
            &v(&["-o", "StrictHostKeyChecking=yes", "-t", "uptime", "-p"]),
        );
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().into_owned()).collect();
        let pos = |x: &str| {
            s.iter()
                .position(|y| y == x)
                .unwrap_or_else(|| panic!("{x} in {s:?}"))
        };
        // the user's option comes before ours, so ssh uses theirs
        assert!(pos("StrictHostKeyChecking=yes") < pos("StrictHostKeyChecking=no"));
        assert!(pos("UserKnownHostsFile=/dev/null") < pos("root@vsock/7"));
        assert_eq!(s[pos("ProxyCommand='p' vsock-proxy 7 22") - 1], "-o");
        assert_eq!(&s[s.len() - 3..], ["root@vsock/7", "uptime", "-p"]);
        let a = ssh_argv(&route, &v(&["-l", "admin", "--", "true"]));
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().into_owned()).collect();
        assert_eq!(&s[..2], ["-l", "admin"]);
        assert_eq!(&s[s.len() - 2..], ["vsock/7", "true"]);
        // "-l" in the remote command is not the user (it was taken for one: ssh then
        // logged in as the local user)
        let a = ssh_argv(&route, &v(&["ls", "-l"]));
        let s: Vec<String> = a.iter().map(|x| x.to_string_lossy().into_owned()).collect();
        assert_eq!(&s[s.len() - 3..], ["root@vsock/7", "ls", "-l"]);
        for user in [&["-ladmin"][..], &["-o", "User=admin"], &["-oUser admin"]] {
            let a = ssh_argv(&route, &v(user));
            assert_eq!(a.last().unwrap(), "vsock/7", "{user:?}");
        }
        let a = ssh_argv(&route, &v(&["-o", "UserKnownHostsFile=/tmp/k"]));
        assert_eq!(a.last().unwrap(), "root@vsock/7");
    }
}
