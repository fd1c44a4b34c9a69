//! `virt-systemd`: thin edge — parse arguments, dispatch, map errors to exit codes.

use clap::Parser;
use std::process::ExitCode;
use virt_systemd::cli::{self, Cli, Command};
use virt_systemd::config::{self, Config};

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

fn run(cli: &Cli, notes: &mut Vec<String>) -> virt_systemd::error::Result<()> {
    let cfg = match &cli.config {
        Some(p) => Config::load(p, true)?,
        None => Config::load(config::DEFAULT_PATH.as_ref(), false)?,
    };
    match &cli.command {
        Command::Rewrite(a) => cli::rewrite::run(a, &cfg, notes),
        Command::Show(a) => cli::show::run(a),
    }
}

fn one_line(e: &virt_systemd::Error) -> String {
    e.to_string().replace('\n', " ")
}
