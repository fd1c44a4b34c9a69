//! The workspace's other binaries, for the root package's tests: cargo hands a test only
//! its own package's binaries (`CARGO_BIN_EXE_*`), and the hook and the libvirt helper are
//! packages of their own. `cargo test` of one root test target (`--test admin_lab`) does
//! not rebuild them, so the first use builds them once (a no-op when they are fresh) into the
//! directory of this build's `virt-systemd`: no test runs a stale hook.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory of this build's binaries, with the hook and the libvirt helper built.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_virt-systemd"))
            .parent()
            .expect("binary path has a parent")
            .to_path_buf();
        // Run by cargo (CARGO is set): build the other packages' binaries for the same
        // profile. cargo has released the build directory by the time tests run.
        if let Some(cargo) = std::env::var_os("CARGO") {
            let profile = match dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev",
                Some(p) => p,
            };
            let out = Command::new(cargo)
                .args(["build", "--locked", "--bins", "--profile", profile])
                .args(["-p", "virt-systemd-hook", "-p", "virt-systemd-libvirt"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("run cargo build");
            assert!(
                out.status.success(),
                "cargo build of the hook and the libvirt helper failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

fn sibling(name: &str, cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        let p = dir().join(name);
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
