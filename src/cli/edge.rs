//! What both CLI binaries share at their edge: config loading, output, error lines, and
//! the commands that need no libvirt. `virt-systemd` runs those itself and execs
//! `virt-systemd-libvirt` for the rest, so a rewrite never pays for loading libvirt.so
//! (~55 libraries, ~14 ms and ~13 MiB per process, measured).

use super::{hook_install, Cli, Command};
use crate::config::{self, Config};
use crate::doctor::HostPaths;
use crate::error::{Error, Result};
use crate::scope::Scope;
use std::io::Write;
use std::path::PathBuf;

/// Name of the libvirt-linked helper binary.
pub const LIBVIRT_HELPER: &str = "virt-systemd-libvirt";
/// Where packages install it.
pub const LIBEXEC_DIR: &str = "/usr/libexec/virt-systemd";

impl Command {
    /// Does this command talk to libvirt?
    pub fn needs_libvirt(&self) -> bool {
        matches!(
            self,
            Command::Enable(_)
                | Command::Disable(_)
                | Command::Status(_)
                | Command::Doctor(_)
                | Command::ControlService(_)
        )
    }
}

/// The helper: `$VIRT_SYSTEMD_LIBEXEC_DIR`, else next to the running binary (a build
/// tree), else the packaged location.
pub fn libvirt_helper() -> PathBuf {
    if let Some(d) = std::env::var_os("VIRT_SYSTEMD_LIBEXEC_DIR") {
        return PathBuf::from(d).join(LIBVIRT_HELPER);
    }
    if let Some(p) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(LIBVIRT_HELPER)))
        .filter(|p| p.exists())
    {
        return p;
    }
    PathBuf::from(LIBEXEC_DIR).join(LIBVIRT_HELPER)
}

/// Whose domains this invocation works on (`-c`, `LIBVIRT_DEFAULT_URI`, who runs it).
pub fn scope(cli: &Cli) -> Scope {
    let env = std::env::var("LIBVIRT_DEFAULT_URI").ok();
    Scope::of(
        cli.connect.as_deref(),
        crate::doctor::gather_uid(),
        env.as_deref().filter(|u| !u.is_empty()),
    )
}

/// A session user's own config: `$XDG_CONFIG_HOME/virt-systemd/config.toml`
/// (`~/.config/…`).
pub fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("virt-systemd/config.toml"))
}

/// The config (`--config`; for session domains the user's own file when there is one, else
/// the host's), pointed at the scope's state.
pub fn load_config(cli: &Cli) -> Result<Config> {
    let scope = scope(cli);
    let mut cfg = match &cli.config {
        Some(p) => Config::load(p, true)?,
        None => match (&scope, user_config_path()) {
            (Scope::Session { .. }, Some(p)) if p.exists() => Config::load(&p, true)?,
            _ => Config::load(config::DEFAULT_PATH.as_ref(), false)?,
        },
    };
    scope.apply(&mut cfg);
    Ok(cfg)
}

pub fn out(s: &str) -> Result<()> {
    let mut so = std::io::stdout().lock();
    so.write_all(s.as_bytes())
        .and_then(|_| so.flush())
        .map_err(|e| Error::Write {
            path: "<stdout>".into(),
            source: e,
        })
}

pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializable") + "\n"
}

/// Print notes and the error line; the process exit code.
pub fn finish(result: Result<()>, notes: &[String]) -> std::process::ExitCode {
    for n in notes {
        eprintln!("virt-systemd: note: {n}");
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virt-systemd: error: {}", e.to_string().replace('\n', " "));
            std::process::ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Run a command that needs no libvirt. `None`: it does (the caller execs the helper).
pub fn run_local(cli: &Cli, notes: &mut Vec<String>) -> Option<Result<()>> {
    if cli.command.needs_libvirt() {
        return None;
    }
    Some(run_local_inner(cli, notes))
}

fn run_local_inner(cli: &Cli, notes: &mut Vec<String>) -> Result<()> {
    let cfg = load_config(cli)?;
    let paths = HostPaths::from_env();
    match &cli.command {
        Command::Rewrite(a) => super::rewrite::run(a, &cfg, notes),
        Command::Show(a) => super::show::run(a),
        Command::HookInstall(a) => {
            if crate::doctor::gather_uid() != 0 {
                let link = paths.hooks_dir.join("qemu.d").join(hook_install::LINK_NAME);
                let found = hook_install::inspect(&link).ok();
                let (ok, msg) = hook_install::for_a_user(&link, found.as_ref(), a.uninstall);
                return if ok {
                    out(&format!("{msg}\n"))
                } else {
                    Err(Error::Permission(msg))
                };
            }
            let o = if a.uninstall {
                hook_install::uninstall(&paths.hooks_dir)?
            } else {
                let exe = std::env::current_exe().ok();
                let hook = hook_install::choose_hook(a.hook.as_deref(), exe.as_deref())?;
                hook_install::install(&paths.hooks_dir, &hook)?
            };
            out(&o
                .messages
                .iter()
                .map(|m| format!("{m}\n"))
                .collect::<String>())
        }
        Command::NotifyListener(a) => {
            let mut hybrid = Vec::new();
            for h in &a.hybrid {
                let (d, p) = h.split_once('=').ok_or_else(|| {
                    Error::invalid(format!("--hybrid wants DOMAIN=UDS_PATH, got {h:?}"))
                })?;
                hybrid.push((d.to_string(), PathBuf::from(p)));
            }
            crate::logging::init("virt-systemd-notify");
            super::notify::listener(&cfg, a.port, &hybrid, scope(cli) == Scope::System)
        }
        Command::WaitReady(a) => {
            let code = super::notify::wait_ready(&cfg, &a.domain, a.timeout, a.ssh);
            if code != 0 {
                std::process::exit(code.into());
            }
            Ok(())
        }
        Command::Ssh(a) => super::notify::ssh(&cfg, &scope(cli), &a.domain, &a.args),
        Command::VsockProxy(a) => {
            let (cid, port) = a.resolve().map_err(Error::invalid)?;
            super::notify::vsock_proxy(cid, a.uds.as_deref(), port)
        }
        Command::Enable(_)
        | Command::Disable(_)
        | Command::Status(_)
        | Command::Doctor(_)
        | Command::ControlService(_) => {
            unreachable!("needs_libvirt")
        }
    }
}
