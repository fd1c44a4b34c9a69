//! `enable` and `disable`: rewrite a defined domain's persistent definition through libvirt.
//!
//! Read the inactive definition with its secure fields (a define without them would drop
//! passwords), run the library's rewriter or stripper, read the definition again and refuse
//! if it changed meanwhile, then define. A dry run reads it without secure fields, so the
//! diff never shows passwords, and works on a read-only connection. libvirt's define replaces the definition as a
//! whole, so either everything is written or nothing is.

use crate::diff;
use crate::libvirt::{Dom, Libvirt};
use virt_systemd::cli::rewrite::request;
use virt_systemd::cli::{DisableArgs, EnableArgs};
use virt_systemd::config::Config;
use virt_systemd::doctor::{gather_uid, gather_vhost_vsock, HostPaths};
use virt_systemd::domain::DomainXml;
use virt_systemd::error::{Error, Result};
use virt_systemd::metadata;
use virt_systemd::render::{self, strip::Mode};
use virt_systemd::report::report;
use virt_systemd::scope::{self, Scope};

/// What happened, for messages and tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Unchanged,
    /// The unified diff (dry run).
    Diff(String),
    Defined,
}

fn persistent(dom: &Dom) -> Result<()> {
    if dom.is_persistent()? {
        Ok(())
    } else {
        Err(Error::Transient(format!(
            "domain '{}' is transient: it has no persistent definition to change \
             (define it with `virsh define`, or rewrite its XML with `virt-systemd rewrite` \
             before `virsh create`)",
            dom.name
        )))
    }
}

pub fn enable(
    lv: &Libvirt,
    a: &EnableArgs,
    cfg: &Config,
    paths: &HostPaths,
    notes: &mut Vec<String>,
) -> Result<Done> {
    let mut req = request(&a.flags)?;
    let dom = lv.domain(&a.domain)?;
    persistent(&dom)?;
    let before = dom.inactive_xml(!a.dry_run)?;
    let vsock_explicit = a.flags.vsock || a.flags.no_vsock || a.flags.vhost_user_vsock.is_some();
    if !vsock_explicit && lv.is_local() {
        // Only when this run would add a device: a domain's own device, a record that
        // already says "no vsock" or names a user-space backend, needs no warning.
        let d = DomainXml::parse(&before)?;
        let rec = metadata::read(&d)?;
        let wanted = rec.as_ref().map_or(cfg.rewrite.vsock, |r| r.vsock);
        let on_backend = rec.as_ref().is_some_and(|r| r.vhost_user_vsock.is_some());
        if wanted && !on_backend && d.facts().vsock.is_none() {
            if let Err(e) = gather_vhost_vsock(&paths.vhost_vsock) {
                let dev = paths.vhost_vsock.display();
                match Scope::of(Some(lv.uri()), gather_uid(), None).backend_dir(&dom.name) {
                    // A session user: the user-space backend, run by the user's manager.
                    Some(dir) => {
                        let sock = scope::backend_vhost_socket(&dir);
                        req.vhost_user_vsock = Some(sock.to_string_lossy().into_owned());
                        notes.push(format!(
                            "you cannot open {dev} ({e}): the vsock device is QEMU's \
                             vhost-user-vsock-pci on a user-space backend at {}; before \
                             starting the domain run `systemctl --user enable --now \
                             virt-systemd-vsock@{}.service` (needs vhost-device-vsock)",
                            sock.display(),
                            scope::unit_escape(&dom.name)
                        ));
                    }
                    None => {
                        req.vsock = Some(false);
                        notes.push(format!(
                            "this host cannot open {dev} ({e}): leaving the vsock device out, \
                             since it would keep the domain from starting here; pass --vsock \
                             to add it anyway"
                        ));
                    }
                }
            }
        }
    }
    let out = render::rewrite(&before, &cfg.rewrite, &req, &|| {
        uuid::Uuid::new_v4().hyphenated().to_string()
    })?;
    notes.extend(out.notes);
    commit(
        lv,
        &dom,
        &before,
        &out.text,
        a.dry_run,
        Verb::Enable,
        notes,
        &|| {},
    )
}

pub fn disable(lv: &Libvirt, a: &DisableArgs, notes: &mut Vec<String>) -> Result<Done> {
    let dom = lv.domain(&a.domain)?;
    persistent(&dom)?;
    let before = dom.inactive_xml(!a.dry_run)?;
    // Never remove the domain's <uuid>, even one we inserted: libvirt keys domains by it.
    let out = render::strip(&before, Mode::KeepIdentity)?;
    notes.extend(out.notes);
    commit(
        lv,
        &dom,
        &before,
        &out.text,
        a.dry_run,
        Verb::Disable,
        notes,
        &|| {},
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Enable,
    Disable,
}

/// Show or write `after`. `between` runs after the rewrite and before the re-read (tests use
/// it to change the domain concurrently).
#[allow(clippy::too_many_arguments)]
pub fn commit(
    lv: &Libvirt,
    dom: &Dom,
    before: &str,
    after: &str,
    dry_run: bool,
    verb: Verb,
    notes: &mut Vec<String>,
    between: &dyn Fn(),
) -> Result<Done> {
    // Our record re-rendered in another quote style than libvirt's serializer chose is
    // no change: libvirt would store the same definition.
    if after == before || diff::xml_equivalent(before, after) {
        return Ok(Done::Unchanged);
    }
    if dry_run {
        let what = match verb {
            Verb::Enable => "enable",
            Verb::Disable => "disable",
        };
        return Ok(Done::Diff(diff::unified(
            before,
            after,
            &format!("{} (current definition)", dom.name),
            &format!("{} (after {what})", dom.name),
            3,
        )));
    }
    between();
    let now = dom.inactive_xml(true)?;
    if now != before {
        return Err(Error::Changed(format!(
            "domain '{}' was changed by someone else while virt-systemd was rewriting it; \
             nothing was written, run the command again",
            dom.name
        )));
    }
    let uuid = dom.uuid()?;
    let new = lv.define(after)?;
    if new.uuid()? != uuid {
        // Cannot happen with an unchanged <name>/<uuid>; say so loudly if it does.
        return Err(Error::Failed(format!(
            "libvirt defined '{}' as a different domain (UUID {}); check `virsh list --all`",
            new.name,
            new.uuid()?
        )));
    }
    // What libvirt made of it: our record and entries must have survived its parser.
    let stored = new.inactive_xml(false)?;
    let r = report(&DomainXml::parse(&stored)?)?;
    match verb {
        Verb::Enable if !r.enabled => notes.push(format!(
            "libvirt dropped virt-systemd's <metadata> from '{}'",
            dom.name
        )),
        Verb::Disable if r.enabled => notes.push(format!(
            "'{}' still carries virt-systemd's <metadata>",
            dom.name
        )),
        _ => {}
    }
    if verb == Verb::Enable {
        for d in &r.drift {
            notes.push(format!("after define: {d}"));
        }
    }
    if new.is_active()? {
        notes.push(format!(
            "domain '{}' is running: the change takes effect at its next start \
             (shut it down and start it; a reboot inside the guest is not enough)",
            dom.name
        ));
    }
    Ok(Done::Defined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use virt_systemd::cli::{Cli, Command};

    fn node() -> String {
        format!(
            "test://{}/../../tests/admin_data/node.xml",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn enable_args(args: &[&str]) -> EnableArgs {
        let mut v = vec!["virt-systemd", "enable"];
        v.extend_from_slice(args);
        match Cli::parse_from(v).command {
            Command::Enable(a) => *a,
            _ => unreachable!(),
        }
    }

    fn no_vsock_host() -> HostPaths {
        HostPaths {
            vhost_vsock: "/nonexistent/vhost-vsock".into(),
            ..HostPaths::default()
        }
    }

    fn vsock_host() -> HostPaths {
        // Any file that opens read-write stands for a usable device.
        HostPaths {
            vhost_vsock: "/dev/null".into(),
            ..HostPaths::default()
        }
    }

    #[test]
    fn enable_then_disable_in_one_connection() {
        let lv = Libvirt::open(Some(&node()), false).unwrap();
        let before = lv.domain("off").unwrap().inactive_xml(true).unwrap();
        let mut notes = vec![];
        let a = enable_args(&["off", "--hostname", "web-01", "--credential", "a.b=xyz"]);
        let d = enable(&lv, &a, &Config::default(), &vsock_host(), &mut notes).unwrap();
        assert_eq!(d, Done::Defined);
        let x = lv.domain("off").unwrap().inactive_xml(false).unwrap();
        for want in [
            "io.systemd.credential:system.hostname=web-01",
            "io.systemd.credential:a.b=xyz",
            "io.systemd.credential:vmm.notify_socket=vsock-stream:2:8742",
            "<smbios mode='sysinfo'/>",
            "<vsock model='virtio'>",
            "urn:virt-systemd:domain:1",
        ] {
            assert!(x.contains(want), "{want} missing from\n{x}");
        }
        assert!(notes.iter().all(|n| !n.contains("running")), "{notes:?}");
        // Again: nothing to change (idempotent on libvirt-normalized XML).
        let d = enable(
            &lv,
            &enable_args(&["off", "-n"]),
            &Config::default(),
            &vsock_host(),
            &mut notes,
        )
        .unwrap();
        assert_eq!(d, Done::Unchanged);
        // Disable brings libvirt's definition back to what it was.
        let d = disable(
            &lv,
            &DisableArgs {
                domain: "off".into(),
                dry_run: false,
            },
            &mut notes,
        )
        .unwrap();
        assert_eq!(d, Done::Defined);
        let after = lv.domain("off").unwrap().inactive_xml(true).unwrap();
        assert_eq!(after, before);
    }

    #[test]
    fn dry_run_changes_nothing() {
        let lv = Libvirt::open(Some(&node()), false).unwrap();
        let before = lv.domain("off").unwrap().inactive_xml(true).unwrap();
        let mut notes = vec![];
        let a = enable_args(&["off", "--dry-run", "--hostname", "h"]);
        let Done::Diff(d) =
            enable(&lv, &a, &Config::default(), &no_vsock_host(), &mut notes).unwrap()
        else {
            panic!()
        };
        assert!(d.starts_with("--- off (current definition)\n+++ off (after enable)\n@@ "));
        assert!(
            d.contains("\n+      <entry>io.systemd.credential:system.hostname=h</entry>\n"),
            "{d}"
        );
        assert!(!d.contains("vsock model"), "{d}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("leaving the vsock device out")),
            "{notes:?}"
        );
        assert_eq!(
            lv.domain("off").unwrap().inactive_xml(true).unwrap(),
            before
        );
        // --vsock overrides the host check.
        let a = enable_args(&["off", "-n", "--vsock"]);
        let Done::Diff(d) =
            enable(&lv, &a, &Config::default(), &no_vsock_host(), &mut notes).unwrap()
        else {
            panic!()
        };
        assert!(d.contains("+    <vsock model"), "{d}");
    }

    #[test]
    fn running_transient_and_unknown() {
        let lv = Libvirt::open(Some(&node()), false).unwrap();
        let mut notes = vec![];
        let a = enable_args(&["on", "--hostname", "h"]);
        assert_eq!(
            enable(&lv, &a, &Config::default(), &no_vsock_host(), &mut notes).unwrap(),
            Done::Defined
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("takes effect at its next start")),
            "{notes:?}"
        );
        // The domain already had a vsock device: the host check leaves it alone.
        assert!(
            !notes.iter().any(|n| n.contains("leaving the vsock")),
            "{notes:?}"
        );
        // Live XML unchanged until the next start.
        let dom = lv.domain("on").unwrap();
        assert!(!dom.live_xml().unwrap().contains("system.hostname"));
        assert!(dom
            .inactive_xml(false)
            .unwrap()
            .contains("system.hostname=h"));

        let e = enable(
            &lv,
            &enable_args(&["tr"]),
            &Config::default(),
            &no_vsock_host(),
            &mut notes,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Transient(_)), "{e}");
        let e = enable(
            &lv,
            &enable_args(&["zz"]),
            &Config::default(),
            &no_vsock_host(),
            &mut notes,
        )
        .unwrap_err();
        assert!(matches!(e, Error::NoSuchDomain(_)), "{e}");
    }

    #[test]
    fn concurrent_change_is_refused() {
        let lv = Libvirt::open(Some(&node()), false).unwrap();
        let dom = lv.domain("off").unwrap();
        let before = dom.inactive_xml(true).unwrap();
        let after = render::rewrite(
            &before,
            &Default::default(),
            &request(&enable_args(&["off", "--hostname", "x"]).flags).unwrap(),
            &|| unreachable!(),
        )
        .unwrap()
        .text;
        // Someone else changes the memory size between our read and our define.
        let other = before.replace(
            "<memory unit='KiB'>1048576</memory>",
            "<memory unit='KiB'>2097152</memory>",
        );
        assert_ne!(other, before);
        let mut notes = vec![];
        let e = commit(
            &lv,
            &dom,
            &before,
            &after,
            false,
            Verb::Enable,
            &mut notes,
            &|| {
                lv.define(&other).unwrap();
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::Changed(_)), "{e}");
        // Their change stands, ours was not written.
        let now = dom.inactive_xml(true).unwrap();
        assert!(
            now.contains("2097152") && !now.contains("system.hostname"),
            "{now}"
        );
    }
}
