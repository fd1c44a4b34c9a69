//! The workspace's other binaries, for the root package's tests: cargo hands a test only
//! its own package's binaries (`CARGO_BIN_EXE_*`), and the hook and the libvirt helper are
//! packages of their own. `cargo build`/`cargo test` at the top build every member into the
//! same directory as `virt-systemd`.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

fn sibling(name: &str, cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        let p = Path::new(env!("CARGO_BIN_EXE_virt-systemd")).with_file_name(name);
        assert!(
            p.exists(),
            "{} is missing: build the whole workspace first (cargo build --workspace)",
            p.display()
        );
        p.to_string_lossy().into_owned()
    })
}

/// `virt-systemd-hook` of this build.
pub fn hook() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    sibling("virt-systemd-hook", &P)
}

/// `virt-systemd-libvirt` of this build.
pub fn libvirt_helper() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    sibling("virt-systemd-libvirt", &P)
}
