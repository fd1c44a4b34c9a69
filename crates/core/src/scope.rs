//! Whose domains a command works on: the host's (`qemu:///system`: root's paths under
//! `/run/virt-systemd`) or a user's own session daemon (`qemu:///session`: paths under
//! `/run/user/UID`, where the hook run by that daemon keeps its state). Pure: the caller
//! passes the URI, the effective UID and `LIBVIRT_DEFAULT_URI`.

use crate::config::{Config, Control, Hook};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    System,
    Session { uid: u32 },
}

/// The user's runtime directory as the hook derives it (libvirt gives hooks no
/// `XDG_RUNTIME_DIR`), so the CLI and the hook agree on it.
pub fn user_runtime(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}"))
}

/// The user's machined (varlink, systemd ≥ 259), inside the runtime directory.
pub const USER_MACHINED: &str = "systemd/machine/io.systemd.Machine";

/// Our state in a user's runtime directory (the hook's, the listener's).
pub fn state_dir(runtime: &Path) -> PathBuf {
    runtime.join("virt-systemd")
}

/// Where a user's control service (`virt-systemd-control.service` in the user manager)
/// serves the sockets of that user's session domains; the hook registers addresses there
/// while the service's PID file (`Control::pid_file`) exists.
pub fn control_dir(runtime: &Path) -> PathBuf {
    state_dir(runtime).join("control")
}

/// Is `uri` a local QEMU session URI (`qemu:///session`, `qemu+unix:///session?…`)?
pub fn is_session_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    (scheme == "qemu" || scheme == "qemu+unix") && path.trim_end_matches('/') == "/session"
}

impl Scope {
    /// libvirt's own choice when no URI is given: `LIBVIRT_DEFAULT_URI`, else
    /// `qemu:///system` for root and `qemu:///session` for everyone else.
    pub fn of(uri: Option<&str>, euid: u32, default_uri: Option<&str>) -> Scope {
        let session = match uri.or(default_uri) {
            Some(u) => is_session_uri(u),
            None => euid != 0,
        };
        if session {
            Scope::Session { uid: euid }
        } else {
            Scope::System
        }
    }

    /// Point `cfg` at this scope's state: a session user's hook state lives in the user's
    /// runtime directory, unless the config names another directory on purpose.
    pub fn apply(&self, cfg: &mut Config) {
        if let Scope::Session { uid } = self {
            if cfg.hook.state_dir == Hook::default().state_dir {
                cfg.hook.state_dir = state_dir(&user_runtime(*uid));
            }
            if cfg.control.socket_dir == Control::default().socket_dir {
                cfg.control.socket_dir = control_dir(&user_runtime(*uid));
            }
        }
    }

    /// The user-space vsock backend's directory for domain `name` (session domains):
    /// `/run/user/UID/virt-systemd/vsock/<escaped name>`, where the user units
    /// `virt-systemd-vsock@<escaped name>.service` and `virt-systemd-notify@….socket` put
    /// their sockets.
    pub fn backend_dir(&self, name: &str) -> Option<PathBuf> {
        match self {
            Scope::System => None,
            Scope::Session { uid } => Some(
                state_dir(&user_runtime(*uid))
                    .join("vsock")
                    .join(unit_escape(name)),
            ),
        }
    }
}

/// The libvirt URI of a scope.
pub fn default_uri(scope: &Scope) -> &'static str {
    match scope {
        Scope::System => "qemu:///system",
        Scope::Session { .. } => "qemu:///session",
    }
}

/// What QEMU connects to (vhost-user) in a backend directory.
pub fn backend_vhost_socket(dir: &Path) -> PathBuf {
    dir.join("vhost.sock")
}

/// The backend's hybrid-vsock base path (`--uds-path`) in a backend directory.
pub fn backend_uds(dir: &Path) -> PathBuf {
    dir.join("vm.vsock")
}

/// `systemd-escape` for an instance name: what `%i` expands to for `%I` = `s`.
pub fn unit_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_or_system() {
        assert_eq!(Scope::of(None, 0, None), Scope::System);
        assert_eq!(Scope::of(None, 1000, None), Scope::Session { uid: 1000 });
        assert_eq!(Scope::of(Some("qemu:///system"), 1000, None), Scope::System);
        assert_eq!(Scope::of(None, 1000, Some("qemu:///system")), Scope::System);
        assert_eq!(
            Scope::of(Some("qemu:///session"), 0, None),
            Scope::Session { uid: 0 }
        );
        for u in [
            "qemu:///session",
            "qemu:///session/",
            "qemu+unix:///session?socket=/x",
        ] {
            assert!(is_session_uri(u), "{u}");
        }
        for u in [
            "qemu+ssh://h/session",
            "qemu:///system",
            "test:///default",
            "session",
        ] {
            assert!(!is_session_uri(u), "{u}");
        }
    }

    #[test]
    fn session_state_goes_to_the_runtime_dir_unless_configured() {
        let mut c = Config::default();
        Scope::Session { uid: 1600 }.apply(&mut c);
        assert_eq!(c.hook.state_dir, Path::new("/run/user/1600/virt-systemd"));
        assert_eq!(
            c.control.socket_dir,
            Path::new("/run/user/1600/virt-systemd/control")
        );
        let mut c = Config::default();
        c.hook.state_dir = "/srv/state".into();
        Scope::Session { uid: 1600 }.apply(&mut c);
        assert_eq!(c.hook.state_dir, Path::new("/srv/state"));
        let mut c = Config::default();
        Scope::System.apply(&mut c);
        assert_eq!(c.hook.state_dir, Config::default().hook.state_dir);
    }

    #[test]
    fn escapes_like_systemd_escape() {
        // Values from `systemd-escape` (systemd 252).
        assert_eq!(unit_escape("sessvm"), "sessvm");
        assert_eq!(unit_escape("my vm"), "my\\x20vm");
        assert_eq!(unit_escape("a-b"), "a\\x2db");
        assert_eq!(unit_escape(".hidden"), "\\x2ehidden");
        assert_eq!(unit_escape("a/b"), "a-b");
        assert_eq!(unit_escape("ä"), "\\xc3\\xa4");
        assert_eq!(
            Scope::Session { uid: 5 }.backend_dir("a-b"),
            Some(PathBuf::from("/run/user/5/virt-systemd/vsock/a\\x2db"))
        );
        assert_eq!(Scope::System.backend_dir("x"), None);
    }
}
