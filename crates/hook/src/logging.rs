//! Logging: journald with structured fields when there is a journal (the hook runs under
//! libvirtd), stderr otherwise. MESSAGE_IDs identify event kinds for `journalctl MESSAGE_ID=`.

use tracing_subscriber::prelude::*;

pub const MSG_REGISTERED: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d201";
pub const MSG_UNREGISTERED: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d202";
pub const MSG_FAILED: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d203";
pub const MSG_DRIFT: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d204";
pub const MSG_TIMEOUT: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d205";
pub const MSG_SKIPPED: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d206";
pub const MSG_READY: &str = "5d0bb2b0c7a34c8a9c3f0b6e2a51d207";

/// Our own events from INFO up; libraries (zbus) only from WARN, so their per-message
/// debug output never reaches libvirt's journal.
fn filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("virt_systemd", tracing::Level::INFO)
        .with_target("virt_systemd_hook", tracing::Level::INFO)
        .with_target("virt_systemd_cli", tracing::Level::INFO)
        .with_target("virt_systemd_libvirt", tracing::Level::INFO)
        .with_default(tracing::Level::WARN)
}

/// Install a subscriber; `ident` becomes SYSLOG_IDENTIFIER.
pub fn init(ident: &str) {
    let journal = std::path::Path::new("/run/systemd/journal/socket").exists()
        && std::env::var_os("VIRT_SYSTEMD_LOG_STDERR").is_none();
    if journal {
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_field_prefix(None)
                .with_syslog_identifier(ident.to_string());
            if tracing_subscriber::registry()
                .with(layer.with_filter(filter()))
                .try_init()
                .is_ok()
            {
                return;
            }
        }
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter()))
        .try_init();
}
