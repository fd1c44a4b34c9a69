//! libvirt QEMU hook: `NAME OP SUBOP EXTRA`, domain XML on stdin. Thin: everything is in
//! `virt_systemd_hook::hook`. Must not link libvirt (a test checks the dynamic section).

use std::io::Read;
use virt_systemd_core::config::{self, Config};

fn main() {
    virt_systemd_hook::logging::init("virt-systemd-hook");
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Room for a typical domain XML at once: read_to_end otherwise starts at 32 bytes and
    // doubles, one read(2) per step.
    let mut stdin = Vec::with_capacity(64 * 1024);
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let path = std::env::var_os("VIRT_SYSTEMD_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| config::DEFAULT_PATH.into());
    let cfg = Config::load(&path, false).unwrap_or_else(|e| {
        // Fail open: a broken config must not stop VMs.
        tracing::warn!("{e}; using built-in defaults");
        Config::default()
    });
    let code = virt_systemd_hook::hook::run(&argv, &stdin, &cfg, &Default::default());
    std::process::exit(code);
}
