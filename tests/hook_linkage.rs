//! The hook starts on every libvirt lifecycle event and must never link libvirt.so
//! (DESIGN §1: linking it alone costs ~14 ms per exec); nor may `virt-systemd`, whose
//! `rewrite` should cost little more than starting a process. Only
//! `virt-systemd-libvirt` links it.
//! Needs `readelf` (binutils).

#[path = "common/bins.rs"]
mod bins;

use std::process::Command;

fn needed(bin: &str) -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-d", "-W", bin])
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run readelf ({e}); install binutils"));
    assert!(
        out.status.success(),
        "readelf -d {bin}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_string()))
        .collect()
}

#[test]
fn hook_and_cli_do_not_link_libvirt() {
    for bin in [bins::hook(), env!("CARGO_BIN_EXE_virt-systemd")] {
        let libs = needed(bin);
        assert!(!libs.is_empty(), "readelf found no NEEDED entries at all");
        assert!(
            libs.iter().all(|l| !l.starts_with("libvirt")),
            "{bin} links {libs:?}"
        );
    }
}

#[test]
fn libvirt_helper_does_link_libvirt() {
    // The check above would be vacuous if this did not find libvirt where it is.
    let cli = needed(bins::libvirt_helper());
    assert!(
        cli.iter().any(|l| l.starts_with("libvirt.so")),
        "virt-systemd-libvirt links {cli:?}"
    );
}

#[test]
fn cli_runs_libvirt_commands_through_the_helper() {
    // test:///default through `virt-systemd`: it must find and exec the helper.
    // virt-systemd finds the helper beside itself: make sure this build's is there.
    bins::libvirt_helper();
    let out = Command::new(env!("CARGO_BIN_EXE_virt-systemd"))
        .args([
            "-c",
            "test:///default",
            "--config",
            "/dev/null",
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"test\""));
    // A missing helper is a clear error, not a crash.
    let out = Command::new(env!("CARGO_BIN_EXE_virt-systemd"))
        .args(["-c", "test:///default", "status"])
        .env("VIRT_SYSTEMD_LIBEXEC_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot run /nonexistent/virt-systemd-libvirt"));
}
