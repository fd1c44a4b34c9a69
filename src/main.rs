//! `virt-systemd`: the user's CLI. Runs every command that needs no libvirt itself and
//! execs `virt-systemd-libvirt` (same arguments) for those that do, so `rewrite` and
//! friends never load libvirt.so.

use clap::Parser;
use std::os::unix::process::CommandExt;
use virt_systemd::cli::{edge, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut notes = Vec::new();
    match edge::run_local(&cli, &mut notes) {
        Some(result) => edge::finish(result, &notes),
        None => {
            let helper = edge::libvirt_helper();
            let e = std::process::Command::new(&helper)
                .args(std::env::args_os().skip(1))
                .exec();
            edge::finish(
                Err(virt_systemd::Error::invalid(format!(
                    "cannot run {}: {e} (is virt-systemd installed completely?)",
                    helper.display()
                ))),
                &notes,
            )
        }
    }
}
