//! `virt-systemd hook-install [--uninstall]`: the `qemu.d/50-virt-systemd` link in
//! libvirt's hooks dir, pointing at `virt-systemd-hook`. Also used by `doctor` to recognise
//! an installed hook.
//!
//! Ours = a symbolic link whose target's file name is `virt-systemd-hook`. Anything else at
//! our path is foreign and never overwritten or removed. The link is made under a temporary
//! name in the hooks dir (libvirt only looks at `hooks/<driver>` and `hooks/<driver>.d/*`)
//! and renamed into place, so libvirt never sees a half-made hook.

use crate::error::{Error, Result};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// File name of the link inside `qemu.d` (libvirt ≥ 6.5 runs `qemu.d/*` in order).
pub const LINK_NAME: &str = "50-virt-systemd";
/// File name of the hook binary.
pub const HOOK_BIN: &str = "virt-systemd-hook";
/// Where packages install the hook.
pub const DEFAULT_HOOK: &str = "/usr/libexec/virt-systemd/virt-systemd-hook";
/// libvirt's hooks dir.
pub const DEFAULT_HOOKS_DIR: &str = "/etc/libvirt/hooks";

/// What is at one hook path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// Our link. `resolved` is `None` when the target does not exist.
    Link {
        target: PathBuf,
        resolved: Option<PathBuf>,
    },
    /// A regular file; `mentions_hook`: its bytes name `virt-systemd-hook` (a copy of the
    /// binary or a wrapper script that calls it).
    File {
        mentions_hook: bool,
    },
    /// Something else: a link elsewhere, a directory, …
    Foreign(String),
}

impl Found {
    pub fn is_ours(&self) -> bool {
        matches!(self, Found::Link { .. })
    }
}

/// Look at `path` without following a final symlink.
pub fn inspect(path: &Path) -> std::io::Result<Found> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        if target.file_name() == Some(HOOK_BIN.as_ref()) {
            let abs = path.parent().unwrap_or(Path::new("/")).join(&target);
            return Ok(Found::Link {
                resolved: std::fs::canonicalize(&abs).ok(),
                target,
            });
        }
        return Ok(Found::Foreign(format!(
            "a link to {}, not to {HOOK_BIN}",
            target.display()
        )));
    }
    if md.is_file() {
        let bytes = std::fs::read(path)?;
        let mentions_hook = bytes
            .windows(HOOK_BIN.len())
            .any(|w| w == HOOK_BIN.as_bytes());
        return Ok(Found::File { mentions_hook });
    }
    Ok(Found::Foreign("not a regular file or link".into()))
}

/// The hook binary to link to: `--hook PATH`, else `virt-systemd-hook` next to the running
/// `virt-systemd` when it exists, else [`DEFAULT_HOOK`]. Must be an executable file.
pub fn choose_hook(explicit: Option<&Path>, exe: Option<&Path>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => exe
            .and_then(Path::parent)
            .map(|d| d.join(HOOK_BIN))
            .into_iter()
            .chain([PathBuf::from(DEFAULT_HOOK)])
            .collect(),
    };
    for c in &candidates {
        if is_executable_file(c) {
            return std::path::absolute(c).map_err(|e| Error::Read {
                path: c.display().to_string(),
                source: e,
            });
        }
        if explicit.is_some() {
            return Err(Error::invalid(format!(
                "{} is not an executable file",
                c.display()
            )));
        }
    }
    Err(Error::invalid(format!(
        "no {HOOK_BIN} found (looked at {}); pass --hook PATH",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

pub fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::PermissionDenied => Error::Permission(format!(
            "{}: permission denied (run as root)",
            path.display()
        )),
        _ if e.raw_os_error() == Some(1) || e.raw_os_error() == Some(30) => Error::Permission(
            format!("{}: {e} (run as root, on a writable /etc)", path.display()),
        ),
        _ => Error::Write {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// `hook-install` run by a user (whose domains are session domains): the hook is the
/// host's, one for every libvirt daemon, so a user changes nothing. `(true, message)` when
/// there is nothing to do, `(false, error)` when root must act.
pub fn for_a_user(link: &Path, found: Option<&Found>, uninstall: bool) -> (bool, String) {
    let shared = "the libvirt hook is system-wide: libvirt's session daemons \
                  (qemu:///session) run the same hooks, as their user";
    match (found.is_some_and(Found::is_ours), uninstall) {
        (true, false) => (
            true,
            format!(
                "{} is installed; {shared}, so your session domains are served too \
                 (nothing to do)",
                link.display()
            ),
        ),
        (false, true) => (
            true,
            format!("{} is not installed (nothing to do)", link.display()),
        ),
        (_, uninstall) => {
            (
                false,
                format!(
                "{} {}: {shared}, and only root may change it (sudo virt-systemd hook-install{})",
                link.display(),
                if uninstall { "is installed" } else { "is not installed" },
                if uninstall { " --uninstall" } else { "" }
            ),
            )
        }
    }
}

/// What `install`/`uninstall` did, for the user.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub changed: bool,
    pub messages: Vec<String>,
}

/// How to make libvirt notice a hook change.
/// Said on install: one hook serves the users' daemons too.
pub const SESSIONS: &str = "libvirt's session daemons (qemu:///session) run it too, as \
    their user: their domains go to that user's own systemd-machined (systemd 259+); a \
    running session daemon reads it at its next start";
pub const PICKUP: &str = "libvirt reads its hooks when the daemon starts: run \
    `systemctl restart libvirtd` (or `systemctl restart virtqemud` with modular daemons), \
    or send it SIGHUP (`systemctl reload libvirtd`/`virtqemud`); running domains keep \
    running, and a restart makes the hook register them (reconnect)";

pub fn install(hooks_dir: &Path, hook: &Path) -> Result<Outcome> {
    let legacy = hooks_dir.join("qemu");
    let qemu_d = hooks_dir.join("qemu.d");
    let link = qemu_d.join(LINK_NAME);
    if let Found::Link { target, .. } = inspect(&legacy).map_err(|e| io_err(&legacy, e))? {
        return Ok(Outcome {
            changed: false,
            messages: vec![format!(
                "already installed as {} → {}; nothing to do",
                legacy.display(),
                target.display()
            )],
        });
    }
    let mut messages = Vec::new();
    match inspect(&link).map_err(|e| io_err(&link, e))? {
        Found::Link { target, .. } if target == hook => {
            return Ok(Outcome {
                changed: false,
                messages: vec![format!(
                    "already installed: {} → {}",
                    link.display(),
                    hook.display()
                )],
            });
        }
        Found::Link { target, .. } => messages.push(format!(
            "replacing {} → {} (an older virt-systemd link)",
            link.display(),
            target.display()
        )),
        Found::Missing => {}
        Found::File { .. } => {
            return Err(Error::Conflict(format!(
                "{} exists and is a regular file, not virt-systemd's link; \
                 remove it yourself if it is an old copy of the hook",
                link.display()
            )))
        }
        Found::Foreign(what) => {
            return Err(Error::Conflict(format!(
                "{} exists and is {what}; not overwriting it",
                link.display()
            )))
        }
    }
    if !hooks_dir.is_dir() {
        return Err(Error::invalid(format!(
            "{} does not exist: is libvirt installed?",
            hooks_dir.display()
        )));
    }
    match std::fs::create_dir(&qemu_d) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&qemu_d, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_err(&qemu_d, e))?;
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(&qemu_d, e)),
    }
    // The new link is made next to qemu.d (never inside it, where libvirt would run it),
    // under a fresh name, then renamed over the old one; tempfile removes it on failure.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{LINK_NAME}."))
        .suffix(".tmp")
        .make_in(hooks_dir, |p| std::os::unix::fs::symlink(hook, p))
        .map_err(|e| io_err(hooks_dir, e))?;
    tmp.persist(&link).map_err(|e| io_err(&link, e.error))?;
    if let Ok(d) = std::fs::File::open(&qemu_d) {
        let _ = d.sync_all();
    }
    messages.push(format!("installed {} → {}", link.display(), hook.display()));
    messages.push(PICKUP.to_string());
    messages.push(SESSIONS.to_string());
    Ok(Outcome {
        changed: true,
        messages,
    })
}

pub fn uninstall(hooks_dir: &Path) -> Result<Outcome> {
    let mut messages = Vec::new();
    let mut changed = false;
    let link = hooks_dir.join("qemu.d").join(LINK_NAME);
    let legacy = hooks_dir.join("qemu");
    for (p, must_be_ours) in [(&link, true), (&legacy, false)] {
        match inspect(p).map_err(|e| io_err(p, e))? {
            Found::Link { target, .. } => {
                std::fs::remove_file(p).map_err(|e| io_err(p, e))?;
                messages.push(format!("removed {} → {}", p.display(), target.display()));
                changed = true;
            }
            Found::Missing => {}
            Found::File { .. } | Found::Foreign(_) if must_be_ours => {
                return Err(Error::Conflict(format!(
                    "{} is not virt-systemd's link; not removing it",
                    p.display()
                )))
            }
            // hooks/qemu is another hook of the administrator's: none of our business.
            _ => {}
        }
    }
    if changed {
        messages.push(
            "libvirt stops running the hook once the daemon is restarted or reloaded \
             (`systemctl restart libvirtd`/`virtqemud`, or SIGHUP); machines the hook \
             registered stay until their domains stop"
                .into(),
        );
    } else {
        messages.push(format!(
            "not installed ({} does not exist); nothing to do",
            link.display()
        ));
    }
    Ok(Outcome { changed, messages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn hook_bin(dir: &Path) -> PathBuf {
        let p = dir.join("bin").join(HOOK_BIN);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn install_is_idempotent_and_reversible() {
        let d = tempfile::tempdir().unwrap();
        let hooks = d.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        let h = hook_bin(d.path());
        let o = install(&hooks, &h).unwrap();
        assert!(o.changed);
        let link = hooks.join("qemu.d").join(LINK_NAME);
        assert_eq!(std::fs::read_link(&link).unwrap(), h);
        assert!(matches!(
            inspect(&link).unwrap(),
            Found::Link {
                resolved: Some(_),
                ..
            }
        ));
        assert!(!install(&hooks, &h).unwrap().changed);
        // No temporary left behind.
        assert_eq!(std::fs::read_dir(&hooks).unwrap().count(), 1);
        // A different hook path replaces our own link.
        let h2 = d.path().join("other").join(HOOK_BIN);
        std::fs::create_dir_all(h2.parent().unwrap()).unwrap();
        std::fs::copy(&h, &h2).unwrap();
        assert!(install(&hooks, &h2).unwrap().changed);
        assert_eq!(std::fs::read_link(&link).unwrap(), h2);
        assert!(uninstall(&hooks).unwrap().changed);
        assert!(!link.exists());
        assert!(!uninstall(&hooks).unwrap().changed);
    }

    #[test]
    fn foreign_files_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let hooks = d.path().join("hooks");
        std::fs::create_dir_all(hooks.join("qemu.d")).unwrap();
        let h = hook_bin(d.path());
        let link = hooks.join("qemu.d").join(LINK_NAME);
        std::fs::write(&link, "#!/bin/sh\necho mine\n").unwrap();
        let e = install(&hooks, &h).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        let e = uninstall(&hooks).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(&link).unwrap(),
            "#!/bin/sh\necho mine\n"
        );
        std::fs::remove_file(&link).unwrap();
        symlink("/bin/true", &link).unwrap();
        assert!(matches!(install(&hooks, &h), Err(Error::Conflict(_))));
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/bin/true"));
        // A legacy hooks/qemu script of the administrator's is not ours to remove.
        std::fs::remove_file(&link).unwrap();
        std::fs::write(hooks.join("qemu"), "#!/bin/sh\n").unwrap();
        assert!(!uninstall(&hooks).unwrap().changed);
        assert!(hooks.join("qemu").exists());
    }

    #[test]
    fn legacy_link_counts_as_installed() {
        let d = tempfile::tempdir().unwrap();
        let hooks = d.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        let h = hook_bin(d.path());
        symlink(&h, hooks.join("qemu")).unwrap();
        let o = install(&hooks, &h).unwrap();
        assert!(!o.changed && o.messages[0].contains("already installed as"));
        assert!(!hooks.join("qemu.d").exists());
    }

    #[test]
    fn choosing_the_hook() {
        let d = tempfile::tempdir().unwrap();
        let h = hook_bin(d.path());
        let exe = h.with_file_name("virt-systemd");
        assert_eq!(choose_hook(None, Some(&exe)).unwrap(), h);
        assert_eq!(choose_hook(Some(&h), None).unwrap(), h);
        let e = choose_hook(Some(&d.path().join("nope")), None).unwrap_err();
        assert!(e.to_string().contains("not an executable file"), "{e}");
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(choose_hook(Some(&h), None).is_err());
    }
}
