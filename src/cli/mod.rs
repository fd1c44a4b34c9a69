//! Command-line definitions (clap derive), shared by the binary and the man-page and
//! completion generators.

pub mod edge;
pub mod hook_install;
pub mod notify;
pub mod rewrite;
pub mod show;
pub mod status;

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "virt-systemd",
    version,
    about = "Wire libvirt domains into systemd's VM interface",
    long_about = "Wire libvirt domains into systemd's VM interface: credentials over SMBIOS \
                  OEM strings, a vsock device, kernel command line extensions and the \
                  readiness socket, written losslessly into the domain XML."
)]
pub struct Cli {
    /// libvirt connection URI (like virsh -c)
    #[arg(short = 'c', long = "connect", global = true, value_name = "URI")]
    pub connect: Option<String>,
    /// Host configuration file [default: /etc/virt-systemd/config.toml when present]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Open the libvirt connection read-only (like virsh -r); enough for status
    #[arg(short = 'r', long, global = true)]
    pub readonly: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rewrite a domain XML file or stdin (no libvirt needed)
    Rewrite(Box<RewriteArgs>),
    /// Show what virt-systemd manages in a domain XML, and any drift
    Show(ShowArgs),
    /// Wire a defined libvirt domain into systemd (rewrite its persistent definition)
    Enable(Box<EnableArgs>),
    /// Remove everything virt-systemd manages from a defined libvirt domain
    Disable(DisableArgs),
    /// What each domain carries, and whether it is running, registered and ready
    Status(StatusArgs),
    /// Check this host: hook, libvirt, machined, vsock, ssh proxy, configuration
    Doctor(DoctorArgs),
    /// Install (or remove) the libvirt hook link qemu.d/50-virt-systemd
    HookInstall(HookInstallArgs),
    /// Receive guests' readiness notifications over AF_VSOCK (the host service)
    NotifyListener(NotifyListenerArgs),
    /// Serve machinectl's control socket for every running domain (the host service)
    #[command(
        after_help = "One root-only varlink socket (io.systemd.MachineInstance) per running \
domain, <socket_dir>/<UUID>; the hook registers that address with systemd-machined (systemd >= \
261), and machinectl then acts through libvirt: poweroff = virsh shutdown, reboot = virsh \
reboot, terminate = virsh destroy, pause/resume = virsh suspend/resume; Describe reports \
QEMU-style run states, SubscribeEvents libvirt's lifecycle events. Storage methods answer \
NotSupported. Run by virt-systemd-control.service; follows libvirt's events and reconciles \
its sockets whenever it (re)connects. Run by a user (the user unit virt-systemd-control.service, \
-c qemu:///session) it serves that user's session domains under \
/run/user/UID/virt-systemd/control, to that user and root only, for machinectl --user."
    )]
    ControlService(ControlServiceArgs),
    /// Wait until a domain's guest reports READY=1 (or SSH) in its current boot
    #[command(
        after_help = "Exit status: 0 ready, 15 timed out, 16 domain not running, \
                            17 domain not started with readiness notification."
    )]
    WaitReady(WaitReadyArgs),
    /// SSH into a domain's guest over vsock
    Ssh(SshArgs),
    /// Connect stdin/stdout to a guest's vsock port (for ssh's ProxyCommand)
    VsockProxy(VsockProxyArgs),
}

#[derive(Debug, Args)]
pub struct NotifyListenerArgs {
    /// vsock port [default: the config's notify port, 8742]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u32>,
    /// A domain on a user-space vsock backend: also listen on UDS_PATH_PORT for it
    /// (repeatable; adds to [notify.hybrid] in the config)
    #[arg(long = "hybrid", value_name = "DOMAIN=UDS_PATH")]
    pub hybrid: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ControlServiceArgs {
    /// Directory of the sockets [default: the config's control.socket_dir,
    /// /run/virt-systemd/control]
    #[arg(long, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WaitReadyArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// Give up after this many seconds [default: wait forever]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Wait for ssh-access.target instead of READY=1
    #[arg(long)]
    pub ssh: bool,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Domain name or UUID
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// Arguments for ssh (after --): options, then the remote command
    #[arg(last = true, value_name = "SSH_ARGS")]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
#[command(
    override_usage = "virt-systemd vsock-proxy CID [PORT]\n       virt-systemd vsock-proxy --uds PATH [PORT]"
)]
pub struct VsockProxyArgs {
    /// CID and port (AF_VSOCK), or only the port with --uds; the port defaults to 22
    #[arg(value_name = "CID|PORT", num_args = 0..=2)]
    pub target: Vec<u32>,
    /// Reach the guest through a hybrid-vsock backend socket instead (CONNECT PORT)
    #[arg(long, value_name = "PATH")]
    pub uds: Option<std::path::PathBuf>,
}

impl VsockProxyArgs {
    /// (CID, port) from the positionals.
    pub fn resolve(&self) -> Result<(Option<u32>, u32), String> {
        match (self.uds.is_some(), self.target.as_slice()) {
            (true, []) => Ok((None, 22)),
            (true, [p]) => Ok((None, *p)),
            (false, [c]) => Ok((Some(*c), 22)),
            (false, [c, p]) => Ok((Some(*c), *p)),
            (false, []) => Err("vsock-proxy needs a CID (or --uds PATH)".into()),
            _ => Err("vsock-proxy takes CID [PORT], or --uds PATH [PORT]".into()),
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "The persistent definition is read (inactive, with secure fields), \
    rewritten, checked for concurrent changes and defined again. A running domain gets the \
    change at its next start (a guest reboot is not enough). On a host that cannot open \
    /dev/vhost-vsock no vsock device is added unless --vsock is given."
)]
pub struct EnableArgs {
    /// Domain name, UUID or ID
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// Print a unified diff of the definition instead of changing it
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub flags: RewriteFlags,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// Domain name, UUID or ID
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// Print a unified diff of the definition instead of changing it
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Domains (name, UUID or ID) [default: all]
    #[arg(value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Machine-readable output (JSON, schema version 1)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HookInstallArgs {
    /// Remove the link instead (only if it is virt-systemd's)
    #[arg(long)]
    pub uninstall: bool,
    /// Hook binary to link to [default: virt-systemd-hook next to this program, else
    /// /usr/libexec/virt-systemd/virt-systemd-hook]
    #[arg(long, value_name = "PATH", conflicts_with = "uninstall")]
    pub hook: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// Domain XML file, or - for stdin
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,
    /// Write the result to OUT instead of stdout
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUT",
        conflicts_with = "in_place"
    )]
    pub output: Option<PathBuf>,
    /// Replace FILE atomically, keeping its mode and owner
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// Remove everything virt-systemd manages
    #[arg(long)]
    pub strip: bool,
    #[command(flatten)]
    pub flags: RewriteFlags,
}

/// What to put into a domain; shared by `rewrite` and `enable`.
#[derive(Debug, Args, Default, Clone)]
pub struct RewriteFlags {
    /// Text credential io.systemd.credential:NAME=VALUE (repeatable)
    #[arg(long = "credential", value_name = "NAME=VALUE")]
    pub credential: Vec<OsString>,
    /// Binary credential from a file, base64 in io.systemd.credential.binary: (repeatable)
    #[arg(long = "credential-file", value_name = "NAME=PATH")]
    pub credential_file: Vec<OsString>,
    /// Credential passed through fw_cfg from a host file; the value stays out of the XML
    /// and QEMU's argv (repeatable)
    #[arg(long = "secret-credential", value_name = "NAME=PATH")]
    pub secret_credential: Vec<OsString>,
    /// Stop managing credential NAME and remove it (repeatable)
    #[arg(long = "remove-credential", value_name = "NAME")]
    pub remove_credential: Vec<String>,
    /// Guest hostname (credential system.hostname)
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// SSH public key, or a file of them, for root (credential ssh.authorized_keys.root;
    /// repeatable)
    #[arg(long = "ssh-key", value_name = "KEY|PATH")]
    pub ssh_key: Vec<OsString>,
    /// Give the guest the domain UUID as machine ID (credential system.machine_id)
    #[arg(long, overrides_with = "no_machine_id")]
    pub machine_id: bool,
    /// Stop passing the machine ID
    #[arg(long, overrides_with = "machine_id")]
    pub no_machine_id: bool,
    /// Extra kernel command line arguments (repeatable)
    #[arg(long = "kernel-cmdline", value_name = "ARGS")]
    pub kernel_cmdline: Vec<String>,
    /// Add a virtio vsock device with an automatic CID [default]
    #[arg(long, overrides_with = "no_vsock")]
    pub vsock: bool,
    /// Do not add a vsock device (and remove one virt-systemd added)
    #[arg(long, overrides_with = "vsock")]
    pub no_vsock: bool,
    /// Make the vsock device QEMU's vhost-user-vsock-pci, served by a user-space backend
    /// (vhost-device-vsock) at this vhost-user socket, for hosts or users without
    /// /dev/vhost-vsock
    #[arg(long, value_name = "SOCKET", conflicts_with = "no_vsock")]
    pub vhost_user_vsock: Option<String>,
    /// Tell the guest's systemd where to report readiness (vmm.notify_socket) [default]
    #[arg(long, overrides_with = "no_notify")]
    pub notify: bool,
    /// Do not set the readiness socket
    #[arg(long, overrides_with = "notify")]
    pub no_notify: bool,
    /// vsock port of the host's readiness listener [default: 8742]
    #[arg(long, value_name = "PORT")]
    pub notify_port: Option<u32>,
    /// Replace hand-written entries for what we are asked to manage, and switch
    /// <smbios mode='host'|'emulate'/> to 'sysinfo'
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Domain XML file, or - for stdin
    #[arg(value_name = "FILE", default_value = "-")]
    pub file: PathBuf,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

fn tri(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// Read a whole input (`-` = stdin).
pub fn read_input(path: &std::path::Path) -> crate::error::Result<(String, Vec<u8>)> {
    use std::io::Read;
    if path.as_os_str() == "-" {
        // read_to_end would start at 32 bytes and double, a read(2) per step.
        let mut v = Vec::with_capacity(64 * 1024);
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| crate::Error::Read {
                path: "<stdin>".into(),
                source: e,
            })?;
        Ok(("<stdin>".into(), v))
    } else {
        let name = path.display().to_string();
        let v = std::fs::read(path).map_err(|e| crate::Error::Read {
            path: name.clone(),
            source: e,
        })?;
        Ok((name, v))
    }
}
