//! Host configuration, `/etc/virt-systemd/config.toml` (see virt-systemd.toml(5)).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/virt-systemd/config.toml";

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub rewrite: RewriteDefaults,
    pub machined: Machined,
    pub hook: Hook,
    pub notify: Notify,
    pub control: Control,
}

/// Defaults for what `rewrite`/`enable` give a domain that has no recorded intent yet.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteDefaults {
    pub vsock: bool,
    pub notify: bool,
    pub notify_port: u32,
    pub machine_id: bool,
    pub ssh_keys: Vec<String>,
    pub kernel_cmdline: Vec<String>,
}

impl Default for RewriteDefaults {
    fn default() -> Self {
        RewriteDefaults {
            vsock: true,
            notify: true,
            notify_port: crate::DEFAULT_NOTIFY_PORT,
            machine_id: false,
            ssh_keys: vec![],
            kernel_cmdline: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Register {
    #[default]
    Auto,
    Never,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LibvirtMachine {
    #[default]
    Replace,
    Keep,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Machined {
    pub register: Register,
    pub libvirt_machine: LibvirtMachine,
    pub timeout_ms: u64,
    pub strict: bool,
}

impl Default for Machined {
    fn default() -> Self {
        Machined {
            register: Register::Auto,
            libvirt_machine: LibvirtMachine::Replace,
            timeout_ms: 2000,
            strict: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Hook {
    /// Where libvirt writes `NAME.pid` for running QEMU domains.
    pub pid_dir: PathBuf,
    pub state_dir: PathBuf,
    /// How long after the D-Bus deadline (`machined.timeout_ms`) the backstop ends a hook
    /// stuck elsewhere (a pid file that blocks on open, a hung filesystem), in milliseconds.
    pub grace_ms: u64,
}

impl Default for Hook {
    fn default() -> Self {
        Hook {
            pid_dir: "/run/libvirt/qemu".into(),
            state_dir: "/run/virt-systemd".into(),
            grace_ms: 200,
        }
    }
}

/// The readiness listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Notify {
    /// vsock port to listen on; defaults to `rewrite.notify_port`.
    pub port: Option<u32>,
    /// Domains whose vsock is a user-space (hybrid vsock) backend: domain name → the
    /// backend's `--uds-path`. The listener binds `<uds-path>_PORT` for each.
    pub hybrid: std::collections::BTreeMap<String, PathBuf>,
    /// Quiet time after data that ends a message.
    pub idle_ms: u64,
    /// Longest a connection may stay open.
    pub timeout_ms: u64,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            port: None,
            hybrid: Default::default(),
            idle_ms: 250,
            timeout_ms: 5000,
        }
    }
}

/// The machine control service (`virt-systemd control-service`): one varlink socket
/// (`io.systemd.MachineInstance`) per running domain, which `machinectl` uses on systemd ≥ 261.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// Where the sockets live, named by domain UUID. The hook registers that address with
    /// machined, so both must agree; only root may enter it.
    pub socket_dir: PathBuf,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket_dir: "/run/virt-systemd/control".into(),
        }
    }
}

impl Control {
    /// Where the running service records its PID (for `doctor`): beside the directory.
    pub fn pid_file(&self) -> PathBuf {
        self.socket_dir.with_extension("pid")
    }

    /// The control socket of the domain with this UUID (its hyphenated lower-case form).
    pub fn socket(&self, uuid: &uuid::Uuid) -> PathBuf {
        self.socket_dir.join(uuid.hyphenated().to_string())
    }
}

impl Config {
    /// The listener's vsock port (the one `rewrite` writes into `vmm.notify_socket`).
    pub fn notify_port(&self) -> u32 {
        self.notify.port.unwrap_or(self.rewrite.notify_port)
    }

    pub fn parse(text: &str, path: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_string(),
            msg: e.message().to_string()
                + &e.span()
                    .map(|s| {
                        let (l, c) = crate::xmltext::line_col(text.as_bytes(), s.start);
                        format!(" (line {l}, column {c})")
                    })
                    .unwrap_or_default(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &str) -> Result<()> {
        let p = self.rewrite.notify_port;
        if p == 0 || p == u32::MAX {
            return Err(Error::Config {
                path: path.into(),
                msg: format!("rewrite.notify_port {p} is not a usable vsock port"),
            });
        }
        if self.hook.grace_ms == 0 {
            return Err(Error::Config {
                path: path.into(),
                msg: "hook.grace_ms 0: the backstop must come after the D-Bus deadline \
                      (at least 1 ms)"
                    .into(),
            });
        }
        if !self.control.socket_dir.is_absolute() {
            return Err(Error::Config {
                path: path.into(),
                msg: "control.socket_dir must be an absolute path (machined takes only those)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Load `path`; with `explicit == false` a missing file means built-in defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(t) => Config::parse(&t, &path.display().to_string()),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::Config {
                path: path.display().to_string(),
                msg: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let c = Config::parse(
            "[rewrite]\nnotify_port = 9000\n[machined]\nlibvirt_machine = \"keep\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.rewrite.notify_port, 9000);
        assert!(c.rewrite.vsock);
        assert_eq!(c.machined.libvirt_machine, LibvirtMachine::Keep);
        let e = Config::parse("[rewrite]\nvsok = true\n", "t").unwrap_err();
        assert!(e.to_string().contains("vsok"), "{e}");
        assert!(Config::parse("[rewrite]\nnotify_port = 0\n", "t").is_err());
        assert_eq!(Config::default().hook.grace_ms, 200);
        let c = Config::parse("[hook]\ngrace_ms = 60000\n", "t").unwrap();
        assert_eq!(c.hook.grace_ms, 60_000);
        let e = Config::parse("[hook]\ngrace_ms = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("hook.grace_ms"), "{e}");
        let u = uuid::Uuid::parse_str("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0").unwrap();
        assert_eq!(
            Config::default().control.socket(&u),
            Path::new("/run/virt-systemd/control/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        );
        let e = Config::parse("[control]\nsocket_dir = \"rel\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("control.socket_dir"), "{e}");
    }
}
