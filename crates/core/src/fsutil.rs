//! Atomic file replacement: temp file in the same directory, fsync, rename, then fsync
//! the directory. Mode and (as root) owner of an existing file are kept.
//!
//! The temp file is `tempfile`'s: created exclusively (O_EXCL, a random name, mode 0600)
//! next to the target, removed if anything fails before the rename, renamed over the target
//! by `persist`. The fsyncs, mode and owner are done here: `tempfile` leaves them to its user.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Replace `path` with `data`. `mode` applies to new files; an existing file keeps its own.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(data))
}

/// [`write_atomic`] with the contents written by `fill`, so they need not be in memory
/// whole. `path` is untouched unless `fill` succeeds.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let existing = fs::metadata(path).ok();
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
    fill(&mut w)?;
    w.flush()?;
    drop(w);
    let f = tmp.as_file();
    let perm = existing.as_ref().map_or(mode, |m| m.mode() & 0o7777);
    if let Some(m) = &existing {
        // Only root may give a file away; others keep their own ownership.
        let _ = std::os::unix::fs::fchown(f, Some(m.uid()), Some(m.gid()));
    }
    f.set_permissions(fs::Permissions::from_mode(perm))?;
    f.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.xml");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        write_atomic(&d.path().join("fresh"), b"s", 0o600).unwrap();
        assert_eq!(
            fs::metadata(d.path().join("fresh")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2, "no temp left");
    }
}
