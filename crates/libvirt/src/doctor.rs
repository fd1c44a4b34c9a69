//! `doctor`: gather the host facts (the libvirt part here, since only this binary links
//! libvirt; the rest in the library) and let `virt_systemd::doctor` judge them.

use crate::libvirt::Libvirt;
use std::path::Path;
use std::time::Duration;
use virt_systemd::config::{self, Config};
use virt_systemd::doctor::{self, Doctor, Facts, HostPaths, LibvirtFacts};
use virt_systemd::observe::Observer;
use virt_systemd::scope;

pub fn doctor(uri: Option<&str>, config_path: Option<&Path>, paths: &HostPaths) -> Doctor {
    let library = virt::connect::Connect::version().ok();
    // Read-only is enough for versions, and works for unprivileged users on qemu:///system.
    let connection = Libvirt::open(uri, true)
        .and_then(|lv| Ok((lv.uri().to_string(), lv.lib_version()?)))
        .map_err(|e| e.to_string());
    let bus = Observer::connect(Duration::from_secs(2));
    let (systemd_version, machined) = match &bus {
        Ok(b) => (b.systemd_version(), b.machined_methods()),
        Err(e) => (Err(e.clone()), Err(e.clone())),
    };
    let (cpath, explicit) = match config_path {
        Some(p) => (p, true),
        None => (Path::new(config::DEFAULT_PATH), false),
    };
    let exists = cpath.exists();
    let loaded = Config::load(cpath, explicit);
    let config = (
        cpath.display().to_string(),
        loaded.as_ref().map(|_| exists).map_err(|e| e.to_string()),
    );
    let cfg = loaded.unwrap_or_default();
    let facts = Facts {
        hook: doctor::gather_hook(&paths.hooks_dir),
        daemons: doctor::gather_daemons(&paths.proc),
        libvirt: LibvirtFacts {
            library,
            connection,
        },
        systemd_version,
        machined,
        vhost_vsock: doctor::gather_vhost_vsock(&paths.vhost_vsock),
        vhost_vsock_path: paths.vhost_vsock.clone(),
        ssh_proxy: doctor::gather_executable(&paths.ssh_proxy),
        vsock_backend: doctor::gather_executable(&paths.vsock_backend),
        config,
        uid: doctor::gather_uid(),
        user_machined: scope::user_runtime(doctor::gather_uid())
            .join(scope::USER_MACHINED)
            .exists(),
        control_service: doctor::gather_control_service(&cfg.control.pid_file(), &paths.proc),
    };
    doctor::doctor(&facts)
}
