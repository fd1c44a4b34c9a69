//! Man pages and shell completions generated from the clap definitions
//! (`virt_systemd::cli::Cli`), committed under `packaging/` so that building a package needs
//! no extra step. `make man` runs this; `tests/packaging.rs` fails when the committed files
//! differ from a fresh run.
//!
//! ```sh
//! cargo run --example gen-docs            # writes packaging/man/*.1 and packaging/completions/*
//! cargo run --example gen-docs -- OUTDIR  # the same under OUTDIR
//! ```
//!
//! Written: `man/virt-systemd.1` (global options, the commands, exit status, files),
//! `man/virt-systemd-COMMAND.1` for each command, `completions/virt-systemd.bash`,
//! `completions/_virt-systemd` (zsh) and `completions/virt-systemd.fish`. Generated section-1
//! pages that no longer correspond to a command are deleted; the hand-written
//! `virt-systemd-hook.8` and `virt-systemd.toml.5` are left alone.
#![allow(dead_code)] // also compiled as a module of tests/packaging.rs

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use roff_text::*;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use virt_systemd::error::ExitCode;

/// Name of the program as users type it.
pub const BIN: &str = "virt-systemd";
/// Footer and header of every generated page.
const MANUAL: &str = "virt-systemd manual";

/// Every exit code, in order. Adding a variant to `ExitCode` breaks [`exit_code_meaning`]'s
/// match, so this list and the man page cannot silently fall behind.
const EXIT_CODES: &[ExitCode] = &[
    ExitCode::Ok,
    ExitCode::Failure,
    ExitCode::Usage,
    ExitCode::InputUnreadable,
    ExitCode::NotXml,
    ExitCode::NotDomain,
    ExitCode::Invalid,
    ExitCode::Conflict,
    ExitCode::OutputFailed,
    ExitCode::Config,
    ExitCode::NoSuchDomain,
    ExitCode::CannotConnect,
    ExitCode::PermissionDenied,
    ExitCode::ChangedConcurrently,
    ExitCode::Transient,
];

fn exit_code_meaning(c: ExitCode) -> &'static str {
    match c {
        ExitCode::Ok => "Success (also: nothing to change).",
        ExitCode::Failure => {
            "Other failure; for doctor: at least one check failed; a libvirt error not listed below."
        }
        ExitCode::Usage => "Usage error: unknown flag, missing argument.",
        ExitCode::InputUnreadable => "An input file cannot be read (missing, permission, a directory).",
        ExitCode::NotXml => {
            "The input is not well-formed XML (not UTF-8, truncated, several roots, a DOCTYPE); the message gives line:column."
        }
        ExitCode::NotDomain => "The input is not a libvirt <domain> (or lacks <name> or <os>).",
        ExitCode::Invalid => {
            "Invalid request: credential name or value, size limits, hostname, SSH key, port."
        }
        ExitCode::Conflict => {
            "Conflict with hand-written content (OEM strings, <smbios mode>, a foreign hook file); --force resolves what it can."
        }
        ExitCode::OutputFailed => "The output cannot be written.",
        ExitCode::Config => "The configuration file is invalid.",
        ExitCode::NoSuchDomain => "libvirt knows no such domain.",
        ExitCode::CannotConnect => {
            "Cannot connect to libvirt (bad or unreachable URI, no daemon)."
        }
        ExitCode::PermissionDenied => {
            "Permission denied (libvirt authentication or ACL, read-only connection, the hooks directory)."
        }
        ExitCode::ChangedConcurrently => {
            "The domain's definition changed while it was being rewritten; nothing was written."
        }
        ExitCode::Transient => {
            "The domain is transient: there is no persistent definition to change."
        }
    }
}

/// All generated files: path relative to the output directory → contents.
pub fn render_all() -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    // Completions offer `help COMMAND` too; the pages leave clap's help command out (it has
    // no page of its own, and --help is documented on every page).
    let mut cmd = virt_systemd::cli::Cli::command();
    cmd.build();
    let mut cmd_man = virt_systemd::cli::Cli::command().disable_help_subcommand(true);
    cmd_man.build();
    let version = cmd.get_version().unwrap_or_default().to_string();

    // virt-systemd(1)
    let man = Man::new(cmd_man.clone()).manual(MANUAL);
    let mut page = title(BIN, 1, &version).into_bytes();
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend(main_page_extra().as_bytes());
    man.render_version_section(&mut page)?;
    files.insert(format!("man/{BIN}.1"), page);

    // virt-systemd-COMMAND(1)
    for sub in cmd_man.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone()).manual(MANUAL);
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        let mut full = Vec::new();
        man.render(&mut full)?;
        let mut page = title(name, 1, &version).into_bytes();
        page.extend(without_title(&full));
        page.extend(see_also(&[(BIN, 1), ("virt-systemd.toml", 5)]).as_bytes());
        files.insert(format!("man/{}", man.get_filename()), page);
    }

    // completions
    for (shell, name) in [
        (Shell::Bash, format!("{BIN}.bash")),
        (Shell::Zsh, format!("_{BIN}")),
        (Shell::Fish, format!("{BIN}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), BIN, &mut out);
        files.insert(format!("completions/{name}"), out);
    }
    Ok(files)
}

/// The `.TH` line. clap_mangen writes an empty date as nothing at all, which shifts the
/// source and manual fields one to the left; no date here keeps the pages reproducible.
fn title(name: &str, section: u8, version: &str) -> String {
    format!(
        ".TH \"{}\" \"{section}\" \"\" \"{BIN} {version}\" \"{MANUAL}\"\n",
        name.to_uppercase()
    )
}

/// A rendered page without its `.TH` line.
fn without_title(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    text.lines()
        .filter(|l| !l.starts_with(".TH "))
        .flat_map(|l| [l, "\n"])
        .collect::<String>()
        .into_bytes()
}

/// Sections of virt-systemd(1) that clap knows nothing about.
fn main_page_extra() -> String {
    let mut s = String::new();
    s += &section("EXIT STATUS");
    for c in EXIT_CODES {
        s += &tagged(&(*c as u8).to_string(), exit_code_meaning(*c));
    }
    {
        use virt_systemd::cli::notify::{WAIT_NOT_ENABLED, WAIT_NOT_RUNNING, WAIT_TIMED_OUT};
        for (code, what) in [
            (WAIT_TIMED_OUT, "wait-ready: timed out."),
            (WAIT_NOT_RUNNING, "wait-ready: the domain is not running."),
            (
                WAIT_NOT_ENABLED,
                "wait-ready: the domain was not started with readiness notification.",
            ),
        ] {
            s += &tagged(&code.to_string(), what);
        }
    }
    s += &section("FILES");
    s += &tagged(
        "/etc/virt-systemd/config.toml",
        "Host defaults for rewrite and enable, and the settings of the hook and the readiness listener; see virt-systemd.toml(5).",
    );
    s += &tagged(
        "/etc/libvirt/hooks/qemu.d/50-virt-systemd",
        "The link through which libvirt runs virt-systemd-hook(8); made by the package or by virt-systemd hook-install.",
    );
    s += &tagged(
        "/usr/libexec/virt-systemd/",
        "virt-systemd-hook, and virt-systemd-libvirt, which holds the commands that talk to libvirt (enable, disable, status, doctor).",
    );
    s += &tagged(
        "/run/virt-systemd/domains/UUID.json",
        "Runtime state per running domain: what the hook registered, the vsock CID, readiness.",
    );
    s += &tagged(
        "virt-systemd-notify.socket, virt-systemd-notify.service",
        "The readiness listener (virt-systemd notify-listener), socket-activated on AF_VSOCK port 8742.",
    );
    s += &tagged(
        "~/.config/virt-systemd/config.toml",
        "A session user's own configuration ($XDG_CONFIG_HOME), read instead of the host's when present.",
    );
    s += &tagged(
        "/run/user/UID/virt-systemd/",
        "A session user's runtime state (domains/, the hook's and the listener's) and vsock/DOMAIN/, the user-space vsock backend's sockets.",
    );
    s += &tagged(
        "virt-systemd-vsock@.service, virt-systemd-notify@.socket (user units)",
        "A session domain's user-space vsock backend (vhost-device-vsock) and its readiness listener; enabled per domain by the user, as enable says.",
    );
    s += &tagged(
        "virt-systemd-control.service (user unit)",
        "The control service for the user's session domains (machinectl --user's verbs through libvirt); enabled by the user.",
    );
    s += &section("SESSION DOMAINS");
    s += &para(
        "Domains of libvirt's per-user daemon (qemu:///session, the default URI for users other than root) work without root. The hook is system-wide: the session daemon runs it as its user, and it registers the domain with that user's own systemd-machined (systemd 259 and later; machinectl --user list); with older systemd it logs one line and does nothing. enable, disable, status, wait-ready, ssh and doctor take -c qemu:///session and read the user's state under /run/user/UID/virt-systemd.",
    );
    s += &para(
        "Users cannot open /dev/vhost-vsock on most hosts. For them enable gives the domain QEMU's vhost-user-vsock-pci device on a user-space backend instead, and says which user unit to enable before the domain starts (systemctl --user enable --now virt-systemd-vsock@DOMAIN.service, with DOMAIN escaped by systemd-escape); it needs vhost-device-vsock. Readiness then arrives through the unit's socket, and virt-systemd ssh and vsock-proxy --uds reach the guest through the backend. With systemd 261 or later, machinectl --user poweroff, reboot, terminate, pause and resume act through the user's libvirt when the user runs the control service (systemctl --user enable --now virt-systemd-control.service); without it they act by signals, as machinectl does for machines without a control socket.",
    );
    s += &section("ENVIRONMENT");
    s += &tagged(
        "LIBVIRT_DEFAULT_URI",
        "The libvirt connection used when -c/--connect is not given (else qemu:///system for root, qemu:///session otherwise).",
    );
    s += &section("EXAMPLES");
    s += &example(
        "Wire a defined domain into systemd, then look at it:",
        "virt-systemd enable web-01 --hostname web-01 --ssh-key ~/.ssh/id_ed25519.pub\nvirsh start web-01\nvirt-systemd status web-01\nmachinectl status web-01",
    );
    s += &example(
        "Rewrite a domain XML file without libvirt, and undo it:",
        "virt-systemd rewrite web-01.xml --in-place --hostname web-01 --machine-id\nvirt-systemd rewrite --strip web-01.xml -o clean.xml",
    );
    s += &example("Check the host:", "virt-systemd doctor");
    s += &example(
        "A session domain of a user without /dev/vhost-vsock:",
        "virt-systemd -c qemu:///session enable web-01\nsystemctl --user enable --now virt-systemd-vsock@web\\x2d01.service\nvirsh -c qemu:///session start web-01\nvirt-systemd -c qemu:///session wait-ready web-01\nmachinectl --user list",
    );
    s += &see_also(&[
        ("virt-systemd-hook", 8),
        ("virt-systemd.toml", 5),
        ("virsh", 1),
        ("machinectl", 1),
        ("systemd.system-credentials", 7),
        ("systemd-ssh-proxy", 1),
    ]);
    s
}

/// Minimal roff helpers for the hand-added sections (escaping as roff needs it).
mod roff_text {
    /// Escape prose for a roff text line: backslashes, and a leading `.` or `'`.
    pub fn esc(t: &str) -> String {
        let t = t.replace('\\', "\\\\");
        if t.starts_with('.') || t.starts_with('\'') {
            format!("\\&{t}")
        } else {
            t
        }
    }
    /// Escape a literal (command, file name, option): also `-` as `\-`, so that it can be
    /// copied from the rendered page and searched for.
    pub fn lit(t: &str) -> String {
        esc(t).replace('-', "\\-")
    }
    pub fn section(name: &str) -> String {
        format!(".SH \"{name}\"\n")
    }
    pub fn tagged(tag: &str, text: &str) -> String {
        format!(".TP\n\\fB{}\\fR\n{}\n", lit(tag), esc(text))
    }
    pub fn para(text: &str) -> String {
        format!(".PP\n{}\n", esc(text))
    }
    pub fn example(text: &str, code: &str) -> String {
        let code: String = code.lines().map(|l| lit(l) + "\n").collect();
        format!(".PP\n{}\n.PP\n.RS 4\n.nf\n{code}.fi\n.RE\n", esc(text))
    }
    pub fn see_also(pages: &[(&str, u8)]) -> String {
        let refs: Vec<String> = pages
            .iter()
            .map(|(n, s)| format!("\\fB{}\\fR({s})", lit(n)))
            .collect();
        format!("{}{}\n", section("SEE ALSO"), refs.join(", "))
    }
}

/// Write everything under `out`, deleting generated section-1 pages that are gone.
pub fn write_all(out: &Path) -> io::Result<Vec<String>> {
    let files = render_all()?;
    std::fs::create_dir_all(out.join("man"))?;
    std::fs::create_dir_all(out.join("completions"))?;
    let mut changed = Vec::new();
    for entry in std::fs::read_dir(out.join("man"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let rel = format!("man/{name}");
        if name.ends_with(".1") && !files.contains_key(&rel) {
            std::fs::remove_file(out.join(&rel))?;
            changed.push(format!("removed {rel}"));
        }
    }
    for (rel, data) in &files {
        let path = out.join(rel);
        if std::fs::read(&path).ok().as_deref() != Some(data.as_slice()) {
            std::fs::write(&path, data)?;
            changed.push(format!("wrote {rel}"));
        }
    }
    Ok(changed)
}

fn main() -> io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging"));
    let changed = write_all(&out)?;
    if changed.is_empty() {
        println!("gen-docs: {} is up to date", out.display());
    }
    for c in changed {
        println!("gen-docs: {c}");
    }
    Ok(())
}
