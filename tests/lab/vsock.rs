//! What the lab tests that run a guest on the user-space vsock backend share
//! (`tests/lab_vsock.rs`, `tests/lab_full.rs`): the hook and backend set-up, the failure
//! diagnostics (their domains are `lab::Domain`s with a `vhost`). The backend is QEMU's vhost-user-vsock-pci served by
//! vhost-device-vsock, which exposes the guest's vsock as "hybrid vsock" UNIX sockets:
//! `<uds>_PORT` for guest → host, `CONNECT PORT` on `<uds>` for host → guest.

use super::Lab;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

pub const BACKEND: &str = "/usr/local/bin/vhost-device-vsock";
pub const GUEST_CID: u32 = 3;
/// The listener's (and `rewrite`'s) default port.
pub const NOTIFY_PORT: u32 = virt_systemd::DEFAULT_NOTIFY_PORT;

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn show(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

pub fn exists(lab: &Lab, path: &str) -> bool {
    lab.exec(&["test", "-e", path]).status.success()
}

pub fn json(lab: &Lab, path: &str) -> serde_json::Value {
    let raw = lab.read_file(path);
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{path}: {e}: {}", text(&raw)))
}

/// Start the backend (host build at `backend`) as unit `unit` serving `vhost` and `uds`
/// under `dir`, and wait for its vhost-user socket.
pub fn start_backend(lab: &Lab, backend: &Path, unit: &str, dir: &str, vhost: &str, uds: &str) {
    lab.copy_in(backend, BACKEND, "755");
    lab.sh(&format!(
        "mkdir -p {dir} && systemd-run -q --unit={unit} -p UMask=0000 {BACKEND} \
         --guest-cid={GUEST_CID} --socket={vhost} --uds-path={uds}"
    ));
    lab.wait_for(
        "the backend's vhost-user socket",
        Duration::from_secs(60),
        || exists(lab, vhost).then_some(()),
    );
}

/// For failure messages: the guest's console (`serial`), the listener's, the backend's
/// (`backend_unit`) and the hook's journals, the state under `dir` and the domains' state.
pub fn diagnostics(lab: &Lab, serial: &str, backend_unit: &str, dir: &str) -> String {
    let serial = lab.exec(&["sh", "-c", &format!("tail -c 20000 {serial}")]);
    let journal = lab.exec(&[
        "sh",
        "-c",
        &format!(
            "for u in vsd-notify-listener {backend_unit}; do echo \"[$u]\"; \
             journalctl --no-pager -q -o short-monotonic -n 60 -u $u; done; \
             echo '[virt-systemd-hook]'; journalctl --no-pager -q -p info -n 30 -t virt-systemd-hook"
        ),
    ]);
    let state = lab.exec(&[
        "sh",
        "-c",
        &format!("ls -l /run/virt-systemd/domains {dir}; cat /run/virt-systemd/domains/*"),
    ]);
    format!(
        "--- guest serial console:\n{}\n--- journal:\n{}\n--- state:\n{}{}",
        text(&serial.stdout),
        text(&journal.stdout),
        text(&state.stdout),
        text(&state.stderr)
    )
}

/// The hook's state file and the listener's readiness file of the domain `uuid`.
pub fn state_files(uuid: &str) -> (String, String) {
    let dir = "/run/virt-systemd/domains";
    (
        format!("{dir}/{uuid}.json"),
        format!("{dir}/{uuid}.notify.json"),
    )
}

/// Define the domain in `xml` (a path in the lab) and start it as `name`, with its console
/// log `serial` emptied first; panics with `diagnostics()` when `virsh start` fails.
/// Returns when the start was asked for.
pub fn define_and_start(
    lab: &Lab,
    xml: &str,
    name: &str,
    serial: &str,
    diagnostics: impl Fn() -> String,
) -> Instant {
    lab.sh(&format!("rm -f {serial}"));
    lab.virsh(&["define", xml]);
    let t = Instant::now();
    let start = lab.exec(&["virsh", "start", name]);
    assert!(
        start.status.success(),
        "virsh start {name}: {}\n{}",
        show(&start),
        diagnostics()
    );
    t
}

/// The units a readiness record lists as active.
pub fn units_active(r: &serde_json::Value) -> Vec<&str> {
    r["units_active"]
        .as_array()
        .unwrap_or_else(|| panic!("no units_active: {r}"))
        .iter()
        .filter_map(|u| u.as_str())
        .collect()
}

/// `virsh destroy name`, then wait until the hook's release removed the domain's state and
/// readiness files.
pub fn destroy(lab: &Lab, name: &str, uuid: &str) {
    let (state, readiness) = state_files(uuid);
    lab.virsh(&["destroy", name]);
    lab.wait_for(
        "state and readiness removed",
        Duration::from_secs(180),
        || (!exists(lab, &state) && !exists(lab, &readiness)).then_some(()),
    );
}
