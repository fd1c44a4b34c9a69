//! `virt-systemd-libvirt`: the commands that talk to libvirt (enable, disable, status,
//! doctor, control-service), exec'ed by `virt-systemd` with the same arguments. The only binary that links
//! libvirt.so; the others stay light (the hook must never load it).

mod control;
mod diff;
mod doctor;
mod enable;
mod libvirt;
mod status;

use clap::Parser;
use libvirt::Libvirt;
use std::process::ExitCode;
use virt_systemd::cli::edge::{self, json, load_config, out};
use virt_systemd::cli::{self, Cli, Command};
use virt_systemd::config::Config;
use virt_systemd::doctor::HostPaths;
use virt_systemd::error::{Error, Result};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut notes = Vec::new();
    // Run directly (not through virt-systemd), the other commands work too.
    let result = match edge::run_local(&cli, &mut notes) {
        Some(r) => r,
        None => run(&cli, &mut notes),
    };
    edge::finish(result, &notes)
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
            let s = status::status(&lv, a, &cfg, &edge::scope(cli))?;
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
        Command::ControlService(a) => {
            virt_systemd::logging::init("virt-systemd-control");
            let mut ctl = cfg.control.clone();
            if let Some(d) = &a.socket_dir {
                ctl.socket_dir = d.clone();
            }
            let scope = edge::scope(cli);
            control::run(
                uri.unwrap_or(virt_systemd::scope::default_uri(&scope)),
                ctl,
                &cfg.hook.state_dir,
            )
            .map_err(Error::Failed)
        }
        _ => unreachable!("run_local handles the commands without libvirt"),
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
