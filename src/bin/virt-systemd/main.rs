//! `virt-systemd`: thin edge — parse arguments, dispatch, map errors to exit codes.
//!
//! The libvirt adapter and the commands that need libvirt live in this binary's modules, so
//! the library (linked by the hook too) never links libvirt.so.

mod doctor;
mod enable;
mod libvirt;
mod status;

use clap::Parser;
use libvirt::Libvirt;
use std::io::Write;
use std::process::ExitCode;
use virt_systemd::cli::{self, hook_install, Cli, Command};
use virt_systemd::config::{self, Config};
use virt_systemd::doctor::HostPaths;
use virt_systemd::error::{Error, Result};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut notes = Vec::new();
    let result = run(&cli, &mut notes);
    for n in &notes {
        eprintln!("virt-systemd: note: {n}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virt-systemd: error: {}", one_line(&e));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config> {
    match &cli.config {
        Some(p) => Config::load(p, true),
        None => Config::load(config::DEFAULT_PATH.as_ref(), false),
    }
}

fn out(s: &str) -> Result<()> {
    let mut so = std::io::stdout().lock();
    so.write_all(s.as_bytes())
        .and_then(|_| so.flush())
        .map_err(|e| Error::Write {
            path: "<stdout>".into(),
            source: e,
        })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializable") + "\n"
}

fn run(cli: &Cli, notes: &mut Vec<String>) -> Result<()> {
    let uri = cli.connect.as_deref();
    let paths = HostPaths::from_env();
    // Every command but doctor (which reports on it) refuses to run with a broken config.
    let cfg = match &cli.command {
        Command::Doctor(_) => Config::default(),
        _ => load_config(cli)?,
    };
    match &cli.command {
        Command::Rewrite(a) => cli::rewrite::run(a, &cfg, notes),
        Command::Show(a) => cli::show::run(a),
        Command::Enable(a) => {
            let lv = Libvirt::open(uri, cli.readonly)?;
            let done = enable::enable(&lv, a, &cfg, &paths, notes)?;
            report(&a.domain, done, "enabled", notes)
        }
        Command::Disable(a) => {
            let lv = Libvirt::open(uri, cli.readonly)?;
            let done = enable::disable(&lv, a, notes)?;
            report(&a.domain, done, "disabled", notes)
        }
        Command::Status(a) => {
            let lv = Libvirt::open(uri, cli.readonly)?;
            let s = status::status(&lv, a, &cfg)?;
            out(&if a.json {
                json(&s)
            } else {
                cli::status::table(&s)
            })
        }
        Command::Doctor(a) => {
            let d = doctor::doctor(uri, cli.config.as_deref(), &paths);
            out(&if a.json {
                json(&d)
            } else {
                virt_systemd::doctor::human(&d)
            })?;
            let fails = d
                .checks
                .iter()
                .filter(|c| c.verdict == virt_systemd::doctor::Verdict::Fail)
                .count();
            if fails > 0 {
                return Err(Error::Failed(format!(
                    "{fails} check{} failed",
                    if fails == 1 { "" } else { "s" }
                )));
            }
            Ok(())
        }
        Command::HookInstall(a) => {
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
                hybrid.push((d.to_string(), std::path::PathBuf::from(p)));
            }
            virt_systemd::logging::init("virt-systemd-notify");
            cli::notify::listener(&cfg, a.port, &hybrid)
        }
        Command::WaitReady(a) => {
            let code = cli::notify::wait_ready(&cfg, &a.domain, a.timeout, a.ssh);
            if code != 0 {
                std::process::exit(code.into());
            }
            Ok(())
        }
        Command::Ssh(a) => cli::notify::ssh(&cfg, &a.domain, &a.args),
        Command::VsockProxy(a) => {
            let (cid, port) = a.resolve().map_err(Error::invalid)?;
            cli::notify::vsock_proxy(cid, a.uds.as_deref(), port)
        }
    }
}

fn report(domain: &str, done: enable::Done, verb: &str, notes: &mut Vec<String>) -> Result<()> {
    match done {
        enable::Done::Unchanged => {
            if !notes.iter().any(|n| n.contains("nothing to")) {
                notes.push(format!("domain '{domain}': nothing to change"));
            }
            Ok(())
        }
        enable::Done::Diff(d) => out(&d),
        enable::Done::Defined => out(&format!("domain '{domain}' {verb}\n")),
    }
}

fn one_line(e: &Error) -> String {
    e.to_string().replace('\n', " ")
}
