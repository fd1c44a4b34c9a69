//! Shared by tests/corpus.rs and tests/test_driver.rs: the corpus in tests/corpus/, the
//! fixed flag set every file is rewritten with, what to expect per file, and semantic
//! readers for what virt-systemd puts into a domain.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use virt_systemd::config::RewriteDefaults;
use virt_systemd::credential::{Credential, Value};
use virt_systemd::error::Result;
use virt_systemd::intent::Request;
use virt_systemd::render::{self, Outcome};

/// UUID the rewriter inserts into domains that have none (`--machine-id`).
pub const FIXED_UUID: &str = "0b5e55ed-c0de-4bad-8eed-000000000042";

pub const HOSTNAME: &str = "web-01.example";
/// Every character the XML and OEM-string encodings care about, and non-ASCII.
pub const GREETING_NAME: &str = "app.greeting";
pub const GREETING: &str = "a,b=c<d&e>\"f'g ünïcødé ✓ 日本";
pub const BLOB_NAME: &str = "app.blob";
pub const BLOB: &[u8] = b"\x00\x01\x02\xff\xfe binary\n";
pub const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZpcnQtc3lzdGVtZC1jb3JwdXMtdGVzdC1rZXktMDE admin@example";
pub const SECRET_NAME: &str = "secret.token";
pub const SECRET_PATH: &str = "/etc/credstore.encrypted/secret.token";
pub const KERNEL_ARGS: &str = "quiet systemd.setenv=GREETING=\"a&b<c>\"";
pub const NOTIFY_PORT: u32 = virt_systemd::DEFAULT_NOTIFY_PORT;

pub const OUR_NS: &str = "urn:virt-systemd:domain:1";
pub const FWCFG_PREFIX: &str = "opt/io.systemd.credentials/";

/// Credentials (name) the flag set manages through OEM strings.
pub const MANAGED_OEM: &[&str] = &[
    "system.hostname",
    "ssh.authorized_keys.root",
    GREETING_NAME,
    BLOB_NAME,
    "system.machine_id",
    "vmm.notify_socket",
];

/// The fixed, rich request every corpus file is rewritten with.
pub fn request(force: bool) -> Request {
    Request {
        credentials: vec![
            Credential {
                name: GREETING_NAME.into(),
                value: Value::Text(GREETING.into()),
            },
            Credential {
                name: BLOB_NAME.into(),
                value: Value::Binary(BLOB.to_vec()),
            },
            Credential {
                name: SECRET_NAME.into(),
                value: Value::File(SECRET_PATH.into()),
            },
        ],
        hostname: Some(HOSTNAME.into()),
        ssh_keys: vec![SSH_KEY.into()],
        machine_id: Some(true),
        kernel_cmdline: vec![KERNEL_ARGS.into()],
        force,
        ..Request::default()
    }
}

/// The same request as `virt-systemd rewrite` flags; `blob` is a file holding `BLOB`.
pub fn cli_flags(blob: &Path, force: bool) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        "--credential".into(),
        format!("{GREETING_NAME}={GREETING}").into(),
        "--credential-file".into(),
        {
            let mut s = std::ffi::OsString::from(format!("{BLOB_NAME}="));
            s.push(blob.as_os_str());
            s
        },
        "--secret-credential".into(),
        format!("{SECRET_NAME}={SECRET_PATH}").into(),
        "--hostname".into(),
        HOSTNAME.into(),
        "--ssh-key".into(),
        SSH_KEY.into(),
        "--machine-id".into(),
        "--kernel-cmdline".into(),
        KERNEL_ARGS.into(),
    ];
    if force {
        v.push("--force".into());
    }
    v
}

pub fn fixed_uuid() -> String {
    FIXED_UUID.to_string()
}

/// Rewrite with built-in defaults and the fixed UUID.
pub fn rewrite(text: &str, force: bool) -> Result<Outcome> {
    render::rewrite(
        text,
        &RewriteDefaults::default(),
        &request(force),
        &fixed_uuid,
    )
}

/// How a corpus file behaves under the fixed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Rewrites without --force.
    Ok,
    /// `<os><smbios mode='host'|'emulate'/>`: Conflict without --force; with it the mode
    /// is switched to sysinfo (and restored by strip).
    SmbiosConflict,
    /// A hand-written `io.systemd.credential:system.hostname=`: Conflict without --force;
    /// with it the entry is replaced (so strip cannot bring it back).
    CredentialConflict,
}

impl Expect {
    pub fn force(self) -> bool {
        self != Expect::Ok
    }
}

/// Expectations by file stem (explicit, so a change in behaviour shows up as a failure).
pub fn expect(stem: &str) -> Expect {
    match stem {
        "vi-smbios-host" | "vd-smbios-host" | "vi-smbios-emulate" | "vd-smbios-emulate" => {
            Expect::SmbiosConflict
        }
        "vi-sysinfo-conflict" | "vd-sysinfo-conflict" => Expect::CredentialConflict,
        _ => Expect::Ok,
    }
}

/// The hand-written OEM string vi/vd-sysinfo-conflict carry.
pub const HANDWRITTEN_CONFLICT: &str = "io.systemd.credential:system.hostname=hand-set";
/// The hand-written OEM string for a credential the request does not manage (vi/vd-sysinfo).
pub const HANDWRITTEN_KEPT: &str = "io.systemd.credential:handwritten.cred=hello";

pub struct CorpusFile {
    pub stem: String,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl CorpusFile {
    pub fn text(&self) -> &str {
        virt_systemd::domain::decode(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", self.stem))
    }
    pub fn expect(&self) -> Expect {
        expect(&self.stem)
    }
}

/// What strip(rewrite(input)) must give back: the input, except that a hand-written entry
/// replaced under --force is gone for good (its line is removed).
pub fn expected_strip(f: &CorpusFile) -> String {
    let text = f.text();
    match f.expect() {
        Expect::CredentialConflict => {
            let start = text
                .find(HANDWRITTEN_CONFLICT)
                .expect("conflict file carries the hand-written entry");
            let line_start = text[..start].rfind('\n').expect("not on the first line");
            let line_end = start + text[start..].find('\n').expect("not on the last line");
            format!("{}{}", &text[..line_start], &text[line_end..])
        }
        _ => text.to_string(),
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

pub fn snapshot_path(stem: &str) -> PathBuf {
    root().join("snapshots").join(format!("{stem}.xml"))
}

/// Every `tests/corpus/*.xml` (not `support/`), sorted by name.
pub fn corpus() -> Vec<CorpusFile> {
    let dir = root().join("corpus");
    let mut v: Vec<CorpusFile> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readdir").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "xml"))
        .map(|path| CorpusFile {
            stem: path.file_stem().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&path).unwrap(),
            path,
        })
        .collect();
    v.sort_by(|a, b| a.stem.cmp(&b.stem));
    assert!(
        v.len() >= 40,
        "corpus has only {} files; run tests/corpus/generate.sh",
        v.len()
    );
    v
}

/// What virt-systemd put into (or left in) a domain, read semantically with roxmltree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    pub name: String,
    pub uuid: Option<String>,
    pub oem_strings: Vec<String>,
    /// `<os><smbios mode=…>`
    pub smbios_mode: Option<String>,
    /// `(auto, address)` of each `<devices><vsock><cid>`.
    pub vsocks: Vec<(Option<String>, Option<String>)>,
    /// `(name, file)` of `<sysinfo type='fwcfg'>` entries.
    pub fwcfg: Vec<(String, Option<String>)>,
    pub cmdline: Option<String>,
    pub direct_kernel: bool,
    /// Elements in our namespace anywhere in the document (local names).
    pub ours: Vec<String>,
    /// `<vsd:credential name=…>` children of our metadata element.
    pub recorded_credentials: Vec<String>,
}

pub fn parse_strict(text: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("not well-formed: {e}\n{text}"))
}

fn kid<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.has_tag_name(name) && c.tag_name().namespace().is_none())
}

fn kids<'a, 'i: 'a>(
    n: roxmltree::Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.has_tag_name(name))
}

pub fn facts(text: &str) -> Facts {
    let doc = parse_strict(text);
    let root = doc.root_element();
    let mut f = Facts {
        name: kid(root, "name")
            .and_then(|n| n.text())
            .unwrap_or_default()
            .into(),
        uuid: kid(root, "uuid").and_then(|n| n.text()).map(str::to_string),
        ..Facts::default()
    };
    for si in kids(root, "sysinfo") {
        match si.attribute("type") {
            Some("smbios") => {
                for o in kids(si, "oemStrings") {
                    f.oem_strings
                        .extend(kids(o, "entry").map(|e| e.text().unwrap_or_default().to_string()));
                }
            }
            Some("fwcfg") => f.fwcfg.extend(kids(si, "entry").map(|e| {
                (
                    e.attribute("name").unwrap_or_default().to_string(),
                    e.attribute("file").map(str::to_string),
                )
            })),
            _ => {}
        }
    }
    if let Some(os) = kid(root, "os") {
        f.smbios_mode = kid(os, "smbios").and_then(|s| s.attribute("mode").map(str::to_string));
        f.cmdline = kid(os, "cmdline").map(|c| c.text().unwrap_or_default().to_string());
        f.direct_kernel = kid(os, "kernel").is_some();
    }
    if let Some(dev) = kid(root, "devices") {
        f.vsocks = kids(dev, "vsock")
            .map(|v| {
                let cid = kid(v, "cid");
                (
                    cid.and_then(|c| c.attribute("auto")).map(str::to_string),
                    cid.and_then(|c| c.attribute("address")).map(str::to_string),
                )
            })
            .collect();
    }
    for n in root.descendants() {
        if n.is_element() && n.tag_name().namespace() == Some(OUR_NS) {
            f.ours.push(n.tag_name().name().to_string());
            if n.tag_name().name() == "credential" {
                f.recorded_credentials
                    .push(n.attribute("name").unwrap_or_default().to_string());
            }
        }
    }
    f
}

/// The OEM strings the fixed request renders for a domain with this UUID.
pub fn expected_oem(uuid: &str, direct_kernel: bool) -> Vec<String> {
    use base64::Engine;
    let mut v = vec![
        format!("io.systemd.credential:system.hostname={HOSTNAME}"),
        format!("io.systemd.credential:ssh.authorized_keys.root={SSH_KEY}"),
        format!("io.systemd.credential:{GREETING_NAME}={GREETING}"),
        format!(
            "io.systemd.credential.binary:{BLOB_NAME}={}",
            base64::engine::general_purpose::STANDARD.encode(BLOB)
        ),
        format!(
            "io.systemd.credential:system.machine_id={}",
            uuid.replace('-', "").to_ascii_lowercase()
        ),
        format!("io.systemd.credential:vmm.notify_socket=vsock-stream:2:{NOTIFY_PORT}"),
    ];
    if !direct_kernel {
        v.push(format!(
            "io.systemd.stub.kernel-cmdline-extra={KERNEL_ARGS}"
        ));
        v.push(format!(
            "io.systemd.boot.kernel-cmdline-extra={KERNEL_ARGS}"
        ));
    }
    v
}

/// Is this OEM string one the fixed request manages?
pub fn is_managed_oem(s: &str) -> bool {
    if s.starts_with("io.systemd.stub.kernel-cmdline-extra=")
        || s.starts_with("io.systemd.boot.kernel-cmdline-extra=")
    {
        return true;
    }
    let rest = s
        .strip_prefix("io.systemd.credential:")
        .or_else(|| s.strip_prefix("io.systemd.credential.binary:"));
    rest.and_then(|r| r.split_once('='))
        .is_some_and(|(name, _)| MANAGED_OEM.contains(&name))
}

/// Check that `out` (a rewrite of something whose facts were `before`) carries all of
/// our entries. Returns a list of problems.
pub fn check_rendered(before: &Facts, out: &Facts) -> Vec<String> {
    let mut p = Vec::new();
    let uuid = out.uuid.clone().unwrap_or_default();
    if let Some(u) = &before.uuid {
        if !u.eq_ignore_ascii_case(&uuid) {
            p.push(format!("uuid changed: {u} -> {uuid}"));
        }
    }
    let ours: Vec<&String> = out
        .oem_strings
        .iter()
        .filter(|s| is_managed_oem(s))
        .collect();
    let want = expected_oem(&uuid, before.direct_kernel);
    if ours.iter().map(|s| s.as_str()).collect::<Vec<_>>()
        != want.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    {
        p.push(format!("OEM strings: want {want:#?}\ngot {ours:#?}"));
    }
    let foreign_before: Vec<&String> = before
        .oem_strings
        .iter()
        .filter(|s| !is_managed_oem(s))
        .collect();
    let foreign_after: Vec<&String> = out
        .oem_strings
        .iter()
        .filter(|s| !is_managed_oem(s))
        .collect();
    if foreign_before != foreign_after {
        p.push(format!(
            "foreign OEM strings changed: {foreign_before:?} -> {foreign_after:?}"
        ));
    }
    if out.smbios_mode.as_deref() != Some("sysinfo") {
        p.push(format!(
            "<smbios mode='sysinfo'/> missing: {:?}",
            out.smbios_mode
        ));
    }
    match before.vsocks.len() {
        0 => {
            if out.vsocks != [(Some("yes".into()), None)] {
                p.push(format!(
                    "want one vsock with cid auto=yes: {:?}",
                    out.vsocks
                ));
            }
        }
        _ => {
            if out.vsocks != before.vsocks {
                p.push(format!(
                    "existing vsock changed: {:?} -> {:?}",
                    before.vsocks, out.vsocks
                ));
            }
        }
    }
    let secret = (
        format!("{FWCFG_PREFIX}{SECRET_NAME}"),
        Some(SECRET_PATH.to_string()),
    );
    let mut want_fw = before.fwcfg.clone();
    want_fw.push(secret);
    if out.fwcfg != want_fw {
        p.push(format!(
            "fw_cfg entries: want {want_fw:?}, got {:?}",
            out.fwcfg
        ));
    }
    if before.direct_kernel {
        let want = match before.cmdline.as_deref() {
            None | Some("") => KERNEL_ARGS.to_string(),
            Some(c) => format!("{c} {KERNEL_ARGS}"),
        };
        if out.cmdline.as_deref() != Some(want.as_str()) {
            p.push(format!("cmdline: want {want:?}, got {:?}", out.cmdline));
        }
    } else if out.cmdline != before.cmdline {
        p.push(format!(
            "cmdline changed: {:?} -> {:?}",
            before.cmdline, out.cmdline
        ));
    }
    if !out.ours.iter().any(|n| n == "virt-systemd") {
        p.push(format!(
            "no <virt-systemd> element in {OUR_NS}: {:?}",
            out.ours
        ));
    }
    let mut rec = out.recorded_credentials.clone();
    rec.sort();
    let mut want_rec = vec![
        "system.hostname".to_string(),
        "ssh.authorized_keys.root".into(),
        GREETING_NAME.into(),
        BLOB_NAME.into(),
        SECRET_NAME.into(),
    ];
    want_rec.sort();
    if rec != want_rec {
        p.push(format!(
            "recorded credentials: want {want_rec:?}, got {rec:?}"
        ));
    }
    p
}

/// Check that `stripped` holds nothing of ours, relative to the original `before`.
pub fn check_stripped(before: &Facts, stripped: &Facts) -> Vec<String> {
    let mut p = Vec::new();
    let ours: Vec<&String> = stripped
        .oem_strings
        .iter()
        .filter(|s| is_managed_oem(s) && s.as_str() != HANDWRITTEN_CONFLICT)
        .collect();
    if !ours.is_empty() {
        p.push(format!("OEM strings of ours left: {ours:?}"));
    }
    let foreign_before: Vec<&String> = before
        .oem_strings
        .iter()
        .filter(|s| s.as_str() != HANDWRITTEN_CONFLICT)
        .collect();
    let left: Vec<&String> = stripped.oem_strings.iter().collect();
    if foreign_before != left {
        p.push(format!(
            "OEM strings: want {foreign_before:?}, got {left:?}"
        ));
    }
    if !stripped.ours.is_empty() {
        p.push(format!("elements in {OUR_NS} left: {:?}", stripped.ours));
    }
    if stripped.smbios_mode != before.smbios_mode {
        p.push(format!(
            "<smbios mode>: want {:?}, got {:?}",
            before.smbios_mode, stripped.smbios_mode
        ));
    }
    if stripped.vsocks != before.vsocks {
        p.push(format!(
            "vsock: want {:?}, got {:?}",
            before.vsocks, stripped.vsocks
        ));
    }
    if stripped.fwcfg != before.fwcfg {
        p.push(format!(
            "fw_cfg: want {:?}, got {:?}",
            before.fwcfg, stripped.fwcfg
        ));
    }
    if stripped.cmdline.as_deref().unwrap_or("") != before.cmdline.as_deref().unwrap_or("") {
        p.push(format!(
            "cmdline: want {:?}, got {:?}",
            before.cmdline, stripped.cmdline
        ));
    }
    p
}
