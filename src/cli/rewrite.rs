//! `virt-systemd rewrite`: flags → request, run the core, write the result.

use super::{read_input, tri, RewriteArgs, RewriteFlags};
use crate::config::Config;
use crate::credential::{self, Credential, Value};
use crate::domain;
use crate::error::{Error, Result};
use crate::intent::Request;
use crate::render::{self, strip::Mode};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Build the request from flags, reading key and credential files (never logging values).
pub fn request(f: &RewriteFlags) -> Result<Request> {
    let mut req = Request {
        hostname: f.hostname.clone(),
        remove: f.remove_credential.clone(),
        machine_id: tri(f.machine_id, f.no_machine_id),
        kernel_cmdline: f.kernel_cmdline.clone(),
        vsock: tri(f.vsock, f.no_vsock).or(f.vhost_user_vsock.as_ref().map(|_| true)),
        vhost_user_vsock: f.vhost_user_vsock.clone(),
        notify: tri(f.notify, f.no_notify),
        notify_port: f.notify_port,
        force: f.force,
        ..Request::default()
    };
    for a in &f.credential {
        let (name, value) = split(a, "--credential")?;
        let value = std::str::from_utf8(value.as_bytes()).map_err(|_| {
            Error::invalid(format!(
                "credential {name}: value is not valid UTF-8; pass it with --credential-file"
            ))
        })?;
        req.credentials.push(Credential {
            name,
            value: Value::Text(value.to_string()),
        });
    }
    for a in &f.credential_file {
        let (name, path) = split(a, "--credential-file")?;
        let path = Path::new(path);
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > credential::CREDENTIAL_SIZE_MAX as u64 {
            return Err(Error::invalid(format!(
                "credential {name}: {} is {len} bytes, the limit is {} (1 MiB)",
                path.display(),
                credential::CREDENTIAL_SIZE_MAX
            )));
        }
        let data = std::fs::read(path).map_err(|e| Error::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        req.credentials.push(Credential {
            name,
            value: Value::Binary(data),
        });
    }
    for a in &f.secret_credential {
        let (name, path) = split(a, "--secret-credential")?;
        let path = path.to_str().ok_or_else(|| {
            Error::invalid(format!("secret credential {name}: path is not valid UTF-8"))
        })?;
        req.credentials.push(Credential {
            name,
            value: Value::File(path.to_string()),
        });
    }
    for k in &f.ssh_key {
        req.ssh_keys.extend(ssh_keys(k)?);
    }
    Ok(req)
}

fn split<'a>(a: &'a OsStr, flag: &str) -> Result<(String, &'a OsStr)> {
    let b = a.as_bytes();
    let eq = b
        .iter()
        .position(|&c| c == b'=')
        .ok_or_else(|| Error::invalid(format!("{flag} wants NAME=…, got no '='")))?;
    let name = std::str::from_utf8(&b[..eq])
        .map_err(|_| Error::invalid(format!("{flag}: credential name is not valid UTF-8")))?;
    credential::validate_name(name)?;
    Ok((name.to_string(), OsStr::from_bytes(&b[eq + 1..])))
}

/// `--ssh-key KEY|PATH`: a key literal, or a file with one key per line.
fn ssh_keys(arg: &OsStr) -> Result<Vec<String>> {
    let s = arg.to_string_lossy();
    if credential::looks_like_ssh_key(&s) && !Path::new(arg).exists() {
        return Ok(vec![s.trim().to_string()]);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| Error::Read {
        path: s.to_string(),
        source: e,
    })?;
    if text.contains("PRIVATE KEY") {
        return Err(Error::invalid(format!(
            "{s} holds a private key; pass the public key (.pub)"
        )));
    }
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if keys.is_empty() || !keys.iter().all(|k| credential::looks_like_ssh_key(k)) {
        return Err(Error::invalid(format!("{s} is not an SSH public key file")));
    }
    Ok(keys)
}

pub fn run(a: &RewriteArgs, cfg: &Config, notes: &mut Vec<String>) -> Result<()> {
    if a.in_place && a.file.as_os_str() == "-" {
        return Err(Error::invalid("--in-place needs a FILE, not stdin"));
    }
    let req = request(&a.flags)?;
    let (name, bytes) = read_input(&a.file)?;
    let text = domain::decode(&bytes).map_err(|e| with_source(e, &name))?;
    let out = if a.strip {
        render::strip_spliced(text, Mode::Full)
    } else {
        render::rewrite_spliced(text, &cfg.rewrite, &req, &|| {
            uuid::Uuid::new_v4().hyphenated().to_string()
        })
    }
    .map_err(|e| with_source(e, &name))?;
    notes.extend(out.notes.iter().cloned());
    // Written piece by piece: a large domain's output never exists whole in memory.
    if a.in_place {
        if !out.unchanged(text) {
            write_file(&a.file, &out)?;
        }
    } else if let Some(o) = &a.output {
        write_file(o, &out)?;
    } else {
        let so = std::io::stdout().lock();
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, so);
        out.write_to(&mut w)
            .and_then(|_| w.flush())
            .map_err(|e| Error::Write {
                path: "<stdout>".into(),
                source: e,
            })?;
    }
    Ok(())
}

fn write_file(p: &Path, out: &render::Spliced) -> Result<()> {
    // Domain XML can carry credentials: new files are private.
    crate::fsutil::write_atomic_with(p, 0o600, |w| out.write_to(w)).map_err(|e| Error::Write {
        path: p.into(),
        source: e,
    })
}

/// Prefix parse positions and domain errors with the input's name.
pub fn with_source(e: Error, name: &str) -> Error {
    match e {
        Error::Parse {
            line, column, msg, ..
        } => Error::Parse {
            input: name.to_string(),
            line,
            column,
            msg,
        },
        Error::NotDomain(m) => Error::NotDomain(format!("{name}: {m}")),
        other => other,
    }
}
