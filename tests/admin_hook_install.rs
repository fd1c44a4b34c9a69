//! `hook-install` through the binary, on a hooks dir redirected with
//! `VIRT_SYSTEMD_HOOKS_DIR`: default hook choice, idempotence, the pickup advice, foreign
//! files left alone, uninstall, and permission denied for an unprivileged user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_virt-systemd");
#[path = "common/bins.rs"]
mod bins;
use bins::hook;

fn run(hooks: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--config", "/dev/null", "hook-install"])
        .args(args)
        .env("VIRT_SYSTEMD_HOOKS_DIR", hooks)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn install_uninstall_cycle() {
    let d = tempfile::tempdir().unwrap();
    let hooks = d.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let link = hooks.join("qemu.d/50-virt-systemd");

    // Default: the hook next to this virt-systemd binary (cargo builds both side by side).
    let o = run(&hooks, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(hook()));
    assert!(
        out.starts_with(&format!("installed {} → {}\n", link.display(), hook())),
        "{out}"
    );
    assert!(
        out.contains("systemctl restart libvirtd") && out.contains("SIGHUP"),
        "{out}"
    );
    assert_eq!(
        std::fs::metadata(hooks.join("qemu.d"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // Again: nothing to do.
    let o = run(&hooks, &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o).0.starts_with("already installed"),
        "{}",
        text(&o).0
    );

    // Uninstall removes our link, then has nothing to do.
    let o = run(&hooks, &["--uninstall"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).0.starts_with("removed "), "{}", text(&o).0);
    assert!(std::fs::symlink_metadata(&link).is_err());
    let o = run(&hooks, &["--uninstall"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).0.starts_with("not installed"), "{}", text(&o).0);

    // --hook and --uninstall do not go together.
    assert_eq!(
        run(&hooks, &["--uninstall", "--hook", hook()])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn foreign_link_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let hooks = d.path().join("hooks");
    std::fs::create_dir_all(hooks.join("qemu.d")).unwrap();
    let link = hooks.join("qemu.d/50-virt-systemd");
    std::os::unix::fs::symlink("/usr/local/bin/my-hook", &link).unwrap();
    for args in [&["--hook", hook()][..], &["--uninstall"][..]] {
        let o = run(&hooks, args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(7), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/usr/local/bin/my-hook")
        );
    }
}

#[test]
fn missing_hooks_dir() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&d.path().join("nope"), &["--hook", hook()]);
    assert_eq!(o.status.code(), Some(6));
    assert!(
        text(&o).1.contains("is libvirt installed?"),
        "{}",
        text(&o).1
    );
}

#[test]
fn unprivileged_user_gets_permission_denied() {
    if !rustix::process::geteuid().is_root()
        || Command::new("setpriv").arg("--help").output().is_err()
    {
        eprintln!("skipped: needs root and setpriv to run as nobody");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hooks = d.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["--config", "/dev/null", "hook-install", "--hook", hook()])
        .env("VIRT_SYSTEMD_HOOKS_DIR", &hooks)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    if err.contains("Permission denied") && o.status.code() == Some(127)
        || err.contains("setpriv: failed to execute")
    {
        eprintln!("skipped: nobody cannot execute {BIN}: {err}");
        return;
    }
    assert_eq!(o.status.code(), Some(12), "{err}");
    assert!(
        err.starts_with("virt-systemd: error: ")
            && err.contains("is not installed")
            && err.contains("session daemons")
            && err.contains("only root may change it"),
        "{err}"
    );
    assert!(!hooks.join("qemu.d").exists());

    // Installed by root: a user is told it serves their session domains, and changes nothing.
    let root = Command::new(BIN)
        .args(["--config", "/dev/null", "hook-install", "--hook", hook()])
        .env("VIRT_SYSTEMD_HOOKS_DIR", &hooks)
        .output()
        .unwrap();
    assert!(root.status.success(), "{:?}", text(&root));
    assert!(
        text(&root).0.contains("session daemons"),
        "{:?}",
        text(&root)
    );
    let link = hooks.join("qemu.d/50-virt-systemd");
    let before = std::fs::read_link(&link).unwrap();
    for args in [&["hook-install"][..], &["hook-install", "--uninstall"][..]] {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["--config", "/dev/null"])
            .args(args)
            .env("VIRT_SYSTEMD_HOOKS_DIR", &hooks)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        if args.len() == 1 {
            assert!(o.status.success(), "{err}");
            assert!(out.contains("session domains are served too"), "{out}");
        } else {
            assert_eq!(o.status.code(), Some(12), "{err}");
            assert!(
                err.contains("sudo virt-systemd hook-install --uninstall"),
                "{err}"
            );
        }
        assert_eq!(std::fs::read_link(&link).unwrap(), before);
    }
}
