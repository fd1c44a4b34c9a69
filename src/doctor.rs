//! `virt-systemd doctor`: why virt-systemd does or does not work on this host.
//!
//! Facts are gathered first (files, `/proc`, D-Bus here; libvirt by the binary, which alone
//! links libvirt), then [`checks`] turns them into verdicts — pure, so every verdict is
//! unit-tested. Each check passes, warns or fails, and says how to fix what it found.
//!
//! Paths can be redirected for tests with environment variables:
//! `VIRT_SYSTEMD_HOOKS_DIR` (libvirt's hooks dir), `VIRT_SYSTEMD_PROC` (procfs),
//! `VIRT_SYSTEMD_VHOST_VSOCK` (the vhost-vsock device), `VIRT_SYSTEMD_SSH_PROXY`
//! (colon-separated places to look for `systemd-ssh-proxy`).
//!
//! # JSON schema (version 1)
//! ```text
//! { "version": 1, "ok": bool,   // ok: no check failed
//!   "checks": [ { "id": string, "verdict": "pass"|"warn"|"fail",
//!                 "message": string, "fix": string|null } ] }
//! ```
//! Check ids: `hook`, `hook-loaded`, `libvirt`, `systemd`, `machined`, `machinectl`,
//! `session` (not root), `vhost-vsock`, `ssh-proxy`, `config`.

use crate::cli::hook_install::{self, Found};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const SCHEMA_VERSION: u32 = 1;

/// Host paths `doctor`, `hook-install` and `enable` look at.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub hooks_dir: PathBuf,
    pub proc: PathBuf,
    pub vhost_vsock: PathBuf,
    pub ssh_proxy: Vec<PathBuf>,
    /// Where to look for the user-space vsock backend (vhost-device-vsock).
    pub vsock_backend: Vec<PathBuf>,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            hooks_dir: hook_install::DEFAULT_HOOKS_DIR.into(),
            proc: "/proc".into(),
            vhost_vsock: "/dev/vhost-vsock".into(),
            ssh_proxy: vec![
                "/usr/lib/systemd/systemd-ssh-proxy".into(),
                "/lib/systemd/systemd-ssh-proxy".into(),
            ],
            // What the user unit virt-systemd-vsock@.service runs.
            vsock_backend: vec!["/usr/bin/vhost-device-vsock".into()],
        }
    }
}

impl HostPaths {
    /// Defaults, overridden by the `VIRT_SYSTEMD_*` variables (for tests).
    pub fn from_env() -> HostPaths {
        let mut p = HostPaths::default();
        let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
        if let Some(v) = var("VIRT_SYSTEMD_HOOKS_DIR") {
            p.hooks_dir = v.into();
        }
        if let Some(v) = var("VIRT_SYSTEMD_PROC") {
            p.proc = v.into();
        }
        if let Some(v) = var("VIRT_SYSTEMD_VHOST_VSOCK") {
            p.vhost_vsock = v.into();
        }
        if let Some(v) = var("VIRT_SYSTEMD_SSH_PROXY") {
            p.ssh_proxy = std::env::split_paths(&v).collect();
        }
        if let Some(v) = var("VIRT_SYSTEMD_VSOCK_BACKEND") {
            p.vsock_backend = std::env::split_paths(&v).collect();
        }
        p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub verdict: Verdict,
    pub message: String,
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Doctor {
    pub version: u32,
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// A running libvirt daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub name: String,
    pub pid: u32,
    pub started: Option<SystemTime>,
}

/// The hook as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFacts {
    pub hooks_dir: PathBuf,
    pub link: Result<Found, String>,
    pub legacy: Result<Found, String>,
    /// The installed link's target is an executable file.
    pub executable: bool,
    /// When the hook appeared: newest of the link's mtime and ctime.
    pub since: Option<SystemTime>,
}

/// What the binary learns from libvirt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtFacts {
    /// Version of the libvirt library linked into virt-systemd (`major*1e6+minor*1e3+micro`).
    pub library: Option<u32>,
    /// The connection (URI, daemon's libvirt version) or why it could not be opened.
    pub connection: Result<(String, u32), String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub hook: HookFacts,
    pub daemons: Vec<Daemon>,
    pub libvirt: LibvirtFacts,
    pub systemd_version: Result<String, String>,
    /// Manager method names, or why machined could not be asked.
    pub machined: Result<Vec<String>, String>,
    pub vhost_vsock: Result<(), String>,
    pub vhost_vsock_path: PathBuf,
    pub ssh_proxy: Option<PathBuf>,
    /// vhost-device-vsock, for session domains of users without /dev/vhost-vsock.
    pub vsock_backend: Option<PathBuf>,
    /// Path and outcome of loading the config file (`Ok(false)`: absent, defaults).
    pub config: (String, Result<bool, String>),
    /// Who runs doctor: 0, or a user whose domains are session domains (qemu:///session).
    pub uid: u32,
    /// `virt-systemd control-service` runs (its PID file names a live process).
    pub control_service: bool,
    /// The user's machined listens (`/run/user/UID/systemd/machine/io.systemd.Machine`).
    pub user_machined: bool,
}

/// Is the control service running? Its PID file names a live process of ours.
pub fn gather_control_service(pid_file: &Path, proc: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return false;
    };
    std::fs::read(proc.join(pid.to_string()).join("cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"control-service"))
}

/// The effective user.
pub fn gather_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The major version of a systemd version string (`257.9-1`, `252`).
pub fn systemd_major(v: &str) -> Option<u32> {
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `major.minor.micro` of libvirt's packed version number.
pub fn libvirt_version(v: u32) -> String {
    format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000)
}

pub fn gather_hook(hooks_dir: &Path) -> HookFacts {
    use std::os::unix::fs::MetadataExt;
    let link_path = hooks_dir.join("qemu.d").join(hook_install::LINK_NAME);
    let legacy_path = hooks_dir.join("qemu");
    let link = hook_install::inspect(&link_path).map_err(|e| e.to_string());
    let legacy = hook_install::inspect(&legacy_path).map_err(|e| e.to_string());
    let installed = match (&link, &legacy) {
        (Ok(f), _) if *f != Found::Missing => Some(&link_path),
        (_, Ok(Found::Link { .. })) => Some(&legacy_path),
        _ => None,
    };
    let executable = installed.is_some_and(|p| hook_install::is_executable_file(p));
    let since = installed
        .and_then(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| {
            let t = |s: i64, ns: i64| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(s.max(0) as u64)
                    + Duration::from_nanos(ns.max(0) as u64)
            };
            t(m.mtime(), m.mtime_nsec()).max(t(m.ctime(), m.ctime_nsec()))
        });
    HookFacts {
        hooks_dir: hooks_dir.to_path_buf(),
        link,
        legacy,
        executable,
        since,
    }
}

/// Clock ticks per second for `/proc/PID/stat` (`AT_CLKTCK` from our auxiliary vector;
/// 100 where it cannot be read, which is USER_HZ on every common architecture).
fn clock_ticks() -> u64 {
    const AT_CLKTCK: u64 = 17;
    let Ok(b) = std::fs::read("/proc/self/auxv") else {
        return 100;
    };
    let w = std::mem::size_of::<usize>();
    b.chunks_exact(2 * w)
        .map(|c| {
            let n = |s: &[u8]| {
                let mut a = [0u8; 8];
                a[..w].copy_from_slice(s);
                u64::from_ne_bytes(a)
            };
            (n(&c[..w]), n(&c[w..]))
        })
        .find(|(k, _)| *k == AT_CLKTCK)
        .map(|(_, v)| v)
        .filter(|&v| v > 0)
        .unwrap_or(100)
}

/// Start time of a process from `/proc/PID/stat` (field 22, ticks since boot) and
/// `/proc/stat`'s `btime`.
pub fn process_start(stat: &str, proc_stat: &str, ticks: u64) -> Option<SystemTime> {
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(btime)
            + Duration::from_millis(start * 1000 / ticks.max(1)),
    )
}

/// Running `libvirtd` and `virtqemud` processes.
pub fn gather_daemons(proc: &Path) -> Vec<Daemon> {
    let ticks = clock_ticks();
    let proc_stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let Ok(rd) = std::fs::read_dir(proc) else {
        return vec![];
    };
    let mut out: Vec<Daemon> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            if comm != "libvirtd" && comm != "virtqemud" {
                return None;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            Some(Daemon {
                name: comm.to_string(),
                pid,
                started: process_start(&stat, &proc_stat, ticks),
            })
        })
        .collect();
    out.sort_by_key(|d| d.pid);
    out
}

pub fn gather_vhost_vsock(p: &Path) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The first executable file of `paths` (the ssh proxy, the vsock backend).
pub fn gather_executable(paths: &[PathBuf]) -> Option<PathBuf> {
    paths
        .iter()
        .find(|p| hook_install::is_executable_file(p))
        .cloned()
}

fn check(id: &'static str, verdict: Verdict, message: String, fix: Option<&str>) -> Check {
    Check {
        id,
        verdict,
        message,
        fix: fix.map(str::to_string),
    }
}

const RESTART: &str = "restart the daemon (`systemctl restart libvirtd`, or `systemctl restart \
    virtqemud` with modular daemons) or send it SIGHUP (`systemctl reload …`); running \
    domains keep running";

/// The verdicts.
pub fn checks(f: &Facts) -> Vec<Check> {
    use Verdict::*;
    let mut out = Vec::new();
    let h = &f.hook;
    let link_path = h.hooks_dir.join("qemu.d").join(hook_install::LINK_NAME);
    let legacy_path = h.hooks_dir.join("qemu");
    let daemon_version = f.libvirt.connection.as_ref().ok().map(|c| c.1);
    let installed = match (&h.link, &h.legacy) {
        (Err(e), _) => {
            out.push(check(
                "hook",
                Fail,
                format!("cannot look at {}: {e}", link_path.display()),
                Some("run doctor as root"),
            ));
            false
        }
        (Ok(Found::Link { target, resolved }), _) => {
            if resolved.is_none() {
                out.push(check(
                    "hook",
                    Fail,
                    format!(
                        "{} → {}, which does not exist",
                        link_path.display(),
                        target.display()
                    ),
                    Some("run `virt-systemd hook-install` (or `--hook PATH`) to point it at the installed hook"),
                ));
                false
            } else if !h.executable {
                out.push(check(
                    "hook",
                    Fail,
                    format!(
                        "{} → {} is not executable: libvirt skips it",
                        link_path.display(),
                        target.display()
                    ),
                    Some("chmod 755 the hook binary"),
                ));
                false
            } else if daemon_version.is_some_and(|v| v < 6_005_000) {
                out.push(check(
                    "hook",
                    Fail,
                    format!(
                        "{} is installed, but libvirt {} reads qemu.d/ only from 6.5.0 on",
                        link_path.display(),
                        libvirt_version(daemon_version.unwrap_or(0))
                    ),
                    Some("link the hook as /etc/libvirt/hooks/qemu instead (if that is free)"),
                ));
                false
            } else {
                out.push(check(
                    "hook",
                    Pass,
                    format!("{} → {}", link_path.display(), target.display()),
                    None,
                ));
                true
            }
        }
        (Ok(Found::File { mentions_hook }), _) => {
            if *mentions_hook && h.executable {
                out.push(check(
                    "hook",
                    Warn,
                    format!(
                        "{} is a file (a copy or wrapper of virt-systemd-hook), not our link",
                        link_path.display()
                    ),
                    Some("replace it with the link: remove it, then `virt-systemd hook-install`"),
                ));
                true
            } else {
                out.push(check(
                    "hook",
                    Fail,
                    format!(
                        "{} is not virt-systemd's hook{}",
                        link_path.display(),
                        if h.executable {
                            ""
                        } else {
                            " (and not executable)"
                        }
                    ),
                    Some("move it away, then `virt-systemd hook-install`"),
                ));
                false
            }
        }
        (Ok(Found::Foreign(what)), _) => {
            out.push(check(
                "hook",
                Fail,
                format!("{} is {what}", link_path.display()),
                Some("move it away, then `virt-systemd hook-install`"),
            ));
            false
        }
        (Ok(Found::Missing), Ok(Found::Link { target, resolved })) => {
            let ok = resolved.is_some() && h.executable;
            out.push(check(
                "hook",
                if ok { Pass } else { Fail },
                format!(
                    "{} → {}{}",
                    legacy_path.display(),
                    target.display(),
                    if ok {
                        ""
                    } else {
                        " (missing or not executable)"
                    }
                ),
                (!ok).then_some("run `virt-systemd hook-install`"),
            ));
            ok
        }
        (Ok(Found::Missing), _) => {
            out.push(check(
                "hook",
                Fail,
                format!("not installed: {} does not exist", link_path.display()),
                Some("run `virt-systemd hook-install`"),
            ));
            false
        }
    };

    // Did the running daemon start after the hook appeared?
    if installed {
        match (f.daemons.is_empty(), h.since) {
            (true, _) => out.push(check(
                "hook-loaded",
                Pass,
                "no libvirtd or virtqemud is running; it reads the hook when it starts".into(),
                None,
            )),
            (false, since) => {
                let stale: Vec<&Daemon> = f
                    .daemons
                    .iter()
                    .filter(|d| match (d.started, since) {
                        (Some(s), Some(h)) => s < h,
                        _ => true,
                    })
                    .collect();
                let names = |ds: &[&Daemon]| {
                    ds.iter()
                        .map(|d| format!("{} (pid {})", d.name, d.pid))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if stale.is_empty() {
                    let all: Vec<&Daemon> = f.daemons.iter().collect();
                    out.push(check(
                        "hook-loaded",
                        Pass,
                        format!("{} started after the hook was installed", names(&all)),
                        None,
                    ));
                } else {
                    out.push(check(
                        "hook-loaded",
                        Warn,
                        format!(
                            "{} started before the hook was installed (or its start time is unknown): \
                             it does not run the hook unless it was reloaded since",
                            names(&stale)
                        ),
                        Some(RESTART),
                    ));
                }
            }
        }
    }

    // libvirt.
    let lib = f
        .libvirt
        .library
        .map(libvirt_version)
        .unwrap_or_else(|| "unknown".into());
    match &f.libvirt.connection {
        Ok((uri, v)) => {
            let mut msg = format!(
                "{uri}: libvirt {} (virt-systemd linked with {lib})",
                libvirt_version(*v)
            );
            let verdict = if *v < 4_004_000 {
                msg += "; vsock devices need libvirt ≥ 4.4";
                Warn
            } else {
                Pass
            };
            out.push(check(
                "libvirt",
                verdict,
                msg,
                (verdict == Warn).then_some("upgrade libvirt, or enable with --no-vsock"),
            ));
        }
        Err(e) => out.push(check(
            "libvirt",
            Fail,
            format!("cannot connect (library {lib}): {e}"),
            Some("check the URI (-c), that libvirtd or virtqemud runs (or its socket is enabled), and your rights (run as root for qemu:///system)"),
        )),
    }

    // systemd and machined.
    match &f.systemd_version {
        Ok(v) => out.push(check("systemd", Pass, format!("systemd {v}"), None)),
        Err(e) => out.push(check(
            "systemd",
            Warn,
            format!("cannot ask systemd for its version: {e}"),
            Some("virt-systemd needs a host running systemd with its D-Bus system bus"),
        )),
    }
    match &f.machined {
        Ok(methods) => {
            let has = |m: &str| methods.iter().any(|x| x == m);
            if has("RegisterMachineEx") {
                out.push(check(
                    "machined",
                    Pass,
                    "systemd-machined reachable; RegisterMachineEx available (VSockCID, SSHAddress)".into(),
                    None,
                ));
            } else if has("RegisterMachineWithNetwork") {
                out.push(check(
                    "machined",
                    Pass,
                    "systemd-machined reachable; no RegisterMachineEx (systemd < 259): machines are \
                     registered without vsock CID and SSH address"
                        .into(),
                    None,
                ));
            } else {
                out.push(check(
                    "machined",
                    Fail,
                    "systemd-machined answers but offers neither RegisterMachineEx nor RegisterMachineWithNetwork".into(),
                    Some("upgrade systemd"),
                ));
            }
        }
        Err(e) => out.push(check(
            "machined",
            Fail,
            format!("systemd-machined unreachable: {e}"),
            Some("start it (`systemctl start systemd-machined`); on Debian and Ubuntu it comes with the systemd-container package"),
        )),
    }

    // machinectl's verbs on the VMs the hook registers (crate::machinectl).
    if f.machined.is_ok() {
        let systemd = match &f.systemd_version {
            Ok(v) => format!("systemd {v}"),
            Err(_) => "this systemd".into(),
        };
        let major = f.systemd_version.as_deref().ok().and_then(systemd_major);
        let controls = major.is_some_and(|v| v >= crate::machinectl::CONTROL_SYSTEMD);
        out.push(match (controls, f.control_service) {
            (true, true) => check(
                "machinectl",
                Pass,
                format!(
                    "machinectl {} act on libvirt VMs through libvirt ({systemd}, virt-systemd-control.service running); machinectl kill still signals QEMU: use virsh destroy",
                    crate::machinectl::CONTROLLED
                ),
                None,
            ),
            (true, false) => check(
                "machinectl",
                Warn,
                format!(
                    "{systemd} takes control sockets, but virt-systemd-control.service is not running: machinectl {} on libvirt VMs fail (the VMs are left alone)",
                    crate::machinectl::CONTROLLED
                ),
                Some("systemctl enable --now virt-systemd-control.service"),
            ),
            (false, _) => check(
                "machinectl",
                Warn,
                format!(
                    "{}; {systemd} has no control sockets for machines (systemd {}+)",
                    crate::machinectl::advice(),
                    crate::machinectl::CONTROL_SYSTEMD
                ),
                Some("stop, reboot and pause libvirt VMs with virsh (shutdown, reboot, suspend, resume, destroy)"),
            ),
        });
    }

    // A user's own domains (qemu:///session): the hook registers them with the user's
    // machined where there is one (crate virt-systemd-hook, hook::session).
    if f.uid != 0 {
        let major = f.systemd_version.as_deref().ok().and_then(systemd_major);
        out.push(match (major, f.user_machined) {
            (Some(v), _) if v < 259 => check(
                "session",
                Warn,
                format!(
                    "running as uid {}: session domains (qemu:///session) are not registered \
                     with machined (systemd {v} has no per-user machined, 259+); the hook logs \
                     one line per start and leaves them alone",
                    f.uid
                ),
                None,
            ),
            (_, true) => check(
                "session",
                Pass,
                format!(
                    "running as uid {}: session domains (qemu:///session) are registered with \
                     your machined (`machinectl --user list`)",
                    f.uid
                ),
                None,
            ),
            (_, false) => check(
                "session",
                Warn,
                format!(
                    "running as uid {}: no per-user machined at \
                     /run/user/{0}/systemd/machine/io.systemd.Machine: session domains are \
                     not registered",
                    f.uid
                ),
                Some("install dbus-user-session and keep a user manager running (log in, or `loginctl enable-linger`)"),
            ),
        });
    }

    let vp = f.vhost_vsock_path.display();
    match (&f.vhost_vsock, f.uid, &f.vsock_backend) {
        (Ok(()), ..) => out.push(check("vhost-vsock", Pass, format!("{vp} usable"), None)),
        // A session user: the user-space backend in a user unit instead.
        (Err(e), 1.., Some(b)) => out.push(check(
            "vhost-vsock",
            Pass,
            format!(
                "{vp}: {e}: `enable` puts your session domains' vsock on the user-space \
                 backend ({}, run by virt-systemd-vsock@DOMAIN.service)",
                b.display()
            ),
            None,
        )),
        (Err(e), 1.., None) => out.push(check(
            "vhost-vsock",
            Warn,
            format!(
                "{vp}: {e}, and no user-space backend (vhost-device-vsock): your session \
                 domains get no vsock device, so no readiness and no ssh over vsock"
            ),
            Some("install vhost-device-vsock (Debian 14: `apt install vhost-device-vsock`; elsewhere `cargo install vhost-device-vsock` into /usr/bin)"),
        )),
        (Err(e), ..) => out.push(check(
            "vhost-vsock",
            Warn,
            format!(
                "{vp}: {e}: domains with a vsock device cannot start here; `enable` leaves \
                 the device out unless --vsock is given"
            ),
            Some("load the module (`modprobe vhost_vsock`) on a host that supports it"),
        )),
    }
    match &f.ssh_proxy {
        Some(p) => out.push(check("ssh-proxy", Pass, format!("{}", p.display()), None)),
        None => out.push(check(
            "ssh-proxy",
            Warn,
            "systemd-ssh-proxy not found: `ssh vsock/CID` and `ssh machine/NAME` do not work from this host".into(),
            Some("install systemd ≥ 256 (its ssh proxy and /etc/ssh/ssh_config.d/20-systemd-ssh-proxy.conf)"),
        )),
    }
    let (cp, cr) = &f.config;
    match cr {
        Ok(true) => out.push(check("config", Pass, format!("{cp} is valid"), None)),
        Ok(false) => out.push(check(
            "config",
            Pass,
            format!("{cp} absent: built-in defaults"),
            None,
        )),
        Err(e) => out.push(check(
            "config",
            Fail,
            e.clone(),
            Some("fix the file (see virt-systemd.toml(5)); the hook falls back to defaults meanwhile"),
        )),
    }
    out
}

/// Aligned text: one line per check, its fix indented below.
pub fn human(d: &Doctor) -> String {
    let w = d.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in &d.checks {
        s += &format!("{}  {:<w$}  {}\n", c.verdict.as_str(), c.id, c.message);
        if let Some(f) = &c.fix {
            s += &format!("      {:<w$}  fix: {f}\n", "");
        }
    }
    let fails = d
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    let warns = d
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .count();
    let plural = if warns == 1 { "" } else { "s" };
    s += &format!("{fails} failed, {warns} warning{plural}\n");
    s
}

pub fn doctor(f: &Facts) -> Doctor {
    let checks = checks(f);
    Doctor {
        version: SCHEMA_VERSION,
        ok: checks.iter().all(|c| c.verdict != Verdict::Fail),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn good() -> Facts {
        Facts {
            hook: HookFacts {
                hooks_dir: "/etc/libvirt/hooks".into(),
                link: Ok(Found::Link {
                    target: "/usr/libexec/virt-systemd/virt-systemd-hook".into(),
                    resolved: Some("/usr/libexec/virt-systemd/virt-systemd-hook".into()),
                }),
                legacy: Ok(Found::Missing),
                executable: true,
                since: Some(t(1000)),
            },
            daemons: vec![Daemon {
                name: "libvirtd".into(),
                pid: 42,
                started: Some(t(2000)),
            }],
            libvirt: LibvirtFacts {
                library: Some(9_000_000),
                connection: Ok(("qemu:///system".into(), 11_003_000)),
            },
            systemd_version: Ok("257.9-1".into()),
            machined: Ok(vec![
                "GetMachine".into(),
                "RegisterMachineWithNetwork".into(),
            ]),
            vhost_vsock: Ok(()),
            vhost_vsock_path: "/dev/vhost-vsock".into(),
            ssh_proxy: Some("/usr/lib/systemd/systemd-ssh-proxy".into()),
            vsock_backend: None,
            config: ("/etc/virt-systemd/config.toml".into(), Ok(false)),
            uid: 0,
            control_service: false,
            user_machined: false,
        }
    }

    fn verdict(f: &Facts, id: &str) -> Verdict {
        checks(f)
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id}"))
            .verdict
    }

    #[test]
    fn all_good() {
        let d = doctor(&good());
        assert!(d.ok);
        // All pass but the warning about machinectl's verbs, which no host avoids yet.
        assert!(
            d.checks
                .iter()
                .all(|c| c.verdict == Verdict::Pass || c.id == "machinectl"),
            "{d:?}"
        );
        let ids: Vec<&str> = d.checks.iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            [
                "hook",
                "hook-loaded",
                "libvirt",
                "systemd",
                "machined",
                "machinectl",
                "vhost-vsock",
                "ssh-proxy",
                "config"
            ]
        );
        assert!(
            human(&d).ends_with("0 failed, 1 warning\n"),
            "{}",
            human(&d)
        );
        let m = d.checks.iter().find(|c| c.id == "machinectl").unwrap();
        assert_eq!(m.verdict, Verdict::Warn);
        assert!(
            m.message.contains("poweroff → virsh shutdown"),
            "{}",
            m.message
        );
        assert!(m.message.contains("systemd 257.9-1"), "{}", m.message);
    }

    #[test]
    fn machinectl_verbs_are_safe_only_with_control_sockets_served() {
        let mut f = good();
        f.systemd_version = Ok("262.1-1".into());
        let m = |f: &Facts| {
            checks(f)
                .into_iter()
                .find(|c| c.id == "machinectl")
                .unwrap()
        };
        let c = m(&f);
        assert_eq!(c.verdict, Verdict::Warn, "{c:?}");
        assert!(c.message.contains("not running"), "{c:?}");
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("enable --now virt-systemd-control"));
        f.control_service = true;
        let c = m(&f);
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
        assert!(c.message.contains("machinectl kill still signals"), "{c:?}");
        f.systemd_version = Ok("260".into());
        assert_eq!(m(&f).verdict, Verdict::Warn);
    }

    #[test]
    fn control_service_is_seen_by_its_pid_file() {
        let t = tempfile::tempdir().unwrap();
        let pid = t.path().join("control.pid");
        let proc = t.path().join("proc");
        assert!(!gather_control_service(&pid, &proc));
        std::fs::write(&pid, "4242\n").unwrap();
        assert!(!gather_control_service(&pid, &proc), "no such process");
        std::fs::create_dir_all(proc.join("4242")).unwrap();
        std::fs::write(proc.join("4242/cmdline"), b"/usr/bin/sleep\0infinity\0").unwrap();
        assert!(!gather_control_service(&pid, &proc), "someone else's PID");
        std::fs::write(
            proc.join("4242/cmdline"),
            b"/usr/libexec/virt-systemd/virt-systemd-libvirt\0control-service\0",
        )
        .unwrap();
        assert!(gather_control_service(&pid, &proc));
    }

    #[test]
    fn session_user_is_told_its_domains_are_not_registered() {
        let mut f = good();
        assert!(
            !checks(&f).iter().any(|c| c.id == "session"),
            "root: no such check"
        );
        f.uid = 1000;
        let d = doctor(&f);
        let c = d.checks.iter().find(|c| c.id == "session").unwrap();
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(c.message.contains("uid 1000"), "{}", c.message);
        assert!(
            c.message.contains("systemd 257 has no per-user machined"),
            "{}",
            c.message
        );
        f.systemd_version = Ok("262.1-1".into());
        let d = doctor(&f);
        let c = d.checks.iter().find(|c| c.id == "session").unwrap();
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(
            c.message
                .contains("no per-user machined at /run/user/1000/"),
            "{}",
            c.message
        );
        assert!(c.fix.as_deref().unwrap().contains("dbus-user-session"));
        f.user_machined = true;
        let d = doctor(&f);
        let c = d.checks.iter().find(|c| c.id == "session").unwrap();
        assert_eq!(c.verdict, Verdict::Pass, "{c:?}");
        assert_eq!(systemd_major("252.39-1~deb12u2"), Some(252));
        assert_eq!(systemd_major("x"), None);
    }

    #[test]
    fn verdicts() {
        let mut f = good();
        f.hook.link = Ok(Found::Missing);
        assert_eq!(verdict(&f, "hook"), Verdict::Fail);
        assert!(!checks(&f).iter().any(|c| c.id == "hook-loaded"));
        assert!(!doctor(&f).ok);
        // Legacy hooks/qemu link counts.
        f.hook.legacy = good().hook.link;
        assert_eq!(verdict(&f, "hook"), Verdict::Pass);

        let mut f = good();
        f.daemons[0].started = Some(t(500));
        assert_eq!(verdict(&f, "hook-loaded"), Verdict::Warn);
        f.daemons[0].started = None;
        assert_eq!(verdict(&f, "hook-loaded"), Verdict::Warn);
        f.daemons.clear();
        assert_eq!(verdict(&f, "hook-loaded"), Verdict::Pass);

        let mut f = good();
        f.hook.executable = false;
        assert_eq!(verdict(&f, "hook"), Verdict::Fail);
        let mut f = good();
        f.hook.link = Ok(Found::Link {
            target: "/gone/virt-systemd-hook".into(),
            resolved: None,
        });
        assert_eq!(verdict(&f, "hook"), Verdict::Fail);
        let mut f = good();
        f.hook.link = Ok(Found::Foreign("a link to /bin/true".into()));
        assert_eq!(verdict(&f, "hook"), Verdict::Fail);
        let mut f = good();
        f.hook.link = Ok(Found::File {
            mentions_hook: true,
        });
        assert_eq!(verdict(&f, "hook"), Verdict::Warn);
        let mut f = good();
        f.libvirt.connection = Ok(("qemu:///system".into(), 6_000_000));
        assert_eq!(verdict(&f, "hook"), Verdict::Fail);

        let mut f = good();
        f.libvirt.connection = Err("Failed to connect socket".into());
        assert_eq!(verdict(&f, "libvirt"), Verdict::Fail);
        f.machined = Err("ServiceUnknown".into());
        assert_eq!(verdict(&f, "machined"), Verdict::Fail);
        f.machined = Ok(vec!["RegisterMachineEx".into()]);
        assert_eq!(verdict(&f, "machined"), Verdict::Pass);
        assert!(checks(&f)
            .iter()
            .any(|c| c.id == "machined" && c.message.contains("RegisterMachineEx available")));
        f.machined = Ok(vec![]);
        assert_eq!(verdict(&f, "machined"), Verdict::Fail);
        f.vhost_vsock = Err("No such file or directory".into());
        assert_eq!(verdict(&f, "vhost-vsock"), Verdict::Warn);
        // A session user without the device: fine with the user-space backend, else told
        // how to get it; root keeps the host's warning whatever is installed.
        let mut u = f.clone();
        u.uid = 1000;
        u.vhost_vsock = Err("Permission denied".into());
        u.vsock_backend = Some("/usr/bin/vhost-device-vsock".into());
        assert_eq!(verdict(&u, "vhost-vsock"), Verdict::Pass);
        u.vsock_backend = None;
        let d = doctor(&u);
        let c = d.checks.iter().find(|c| c.id == "vhost-vsock").unwrap();
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(
            c.fix.as_deref().unwrap().contains("vhost-device-vsock"),
            "{c:?}"
        );
        let mut r = f.clone();
        r.vsock_backend = Some("/usr/bin/vhost-device-vsock".into());
        assert_eq!(verdict(&r, "vhost-vsock"), Verdict::Warn);
        f.ssh_proxy = None;
        assert_eq!(verdict(&f, "ssh-proxy"), Verdict::Warn);
        f.systemd_version = Err("no bus".into());
        assert_eq!(verdict(&f, "systemd"), Verdict::Warn);
        f.config.1 = Err("t: unknown field `vsok`".into());
        assert_eq!(verdict(&f, "config"), Verdict::Fail);
        let h = human(&doctor(&f));
        assert!(h.contains("fix: "), "{h}");
    }

    #[test]
    fn start_times() {
        let stat =
            "1234 (libvirtd (x)) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 17 0 5000 1 2 3";
        assert_eq!(
            process_start(stat, "cpu 1 2\nbtime 1700000000\n", 100),
            Some(t(1_700_000_050))
        );
        assert_eq!(process_start("garbage", "btime 1\n", 100), None);
        assert!(clock_ticks() > 0);
        assert_eq!(libvirt_version(9_000_000), "9.0.0");
        assert_eq!(libvirt_version(11_003_001), "11.3.1");
    }

    #[test]
    fn daemons_from_a_fake_proc() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("stat"), "btime 1700000000\n").unwrap();
        for (pid, comm) in [(7, "virtqemud"), (8, "bash"), (9, "libvirtd")] {
            let p = d.path().join(pid.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0"),
            )
            .unwrap();
        }
        let ds = gather_daemons(d.path());
        assert_eq!(
            ds.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["virtqemud", "libvirtd"]
        );
        assert!(ds[0].started.is_some());
    }
}
