//! The hook starts on every libvirt lifecycle event and must never link libvirt.so
//! (DESIGN §1: linking it alone costs ~14 ms per exec). Only `virt-systemd` links it.
//! Needs `readelf` (binutils).

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
fn hook_does_not_link_libvirt() {
    let hook = needed(env!("CARGO_BIN_EXE_virt-systemd-hook"));
    assert!(!hook.is_empty(), "readelf found no NEEDED entries at all");
    assert!(
        hook.iter().all(|l| !l.starts_with("libvirt")),
        "virt-systemd-hook links {hook:?}"
    );
}

#[test]
fn cli_does_link_libvirt() {
    // The check above would be vacuous if this did not find libvirt where it is.
    let cli = needed(env!("CARGO_BIN_EXE_virt-systemd"));
    assert!(
        cli.iter().any(|l| l.starts_with("libvirt.so")),
        "virt-systemd links {cli:?}"
    );
}
