//! Per-domain runtime state, `/run/virt-systemd/domains/<uuid>.json`: what the hook
//! registered, so stop events undo exactly that, across libvirtd restarts.
//! Holds no credential values; files are written atomically.

use crate::machined::{Api, How};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainState {
    pub domain: String,
    pub uuid: String,
    /// Machine name we registered, or are about to (written before the call).
    pub machine: Option<String>,
    pub registered: bool,
    pub how: Option<How>,
    pub api: Option<Api>,
    pub leader: Option<u32>,
    pub vsock_cid: Option<u32>,
    /// libvirt's own machine we unregistered to take its place.
    pub replaced_libvirt: Option<String>,
    /// libvirt's own machine left in place (`libvirt_machine = "keep"`).
    pub kept_libvirt: Option<String>,
    /// The domain carries a virt-systemd record (recorded at start).
    pub enabled: bool,
    /// Readiness port the guest was told (`vmm.notify_socket`), if any.
    pub notify_port: Option<u32>,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("domains"),
        }
    }

    pub fn path(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.json"))
    }

    pub fn load(&self, uuid: &str) -> std::io::Result<Option<DomainState>> {
        match std::fs::read(self.path(uuid)) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, s: &DomainState) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let data = serde_json::to_vec_pretty(s).expect("serializable");
        crate::fsutil::write_atomic(&self.path(&s.uuid), &data, 0o644)
    }

    pub fn remove(&self, uuid: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(uuid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn readiness_path(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.notify.json"))
    }

    /// Readiness reported by the guest in its current boot; written only by the notify
    /// listener, cleared by the hook when the domain starts.
    pub fn load_readiness(&self, uuid: &str) -> Option<crate::notify::protocol::Readiness> {
        let b = std::fs::read(self.readiness_path(uuid)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn save_readiness(
        &self,
        uuid: &str,
        r: &crate::notify::protocol::Readiness,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let data = serde_json::to_vec_pretty(r).expect("serializable");
        crate::fsutil::write_atomic(&self.readiness_path(uuid), &data, 0o644)
    }

    pub fn clear_readiness(&self, uuid: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.readiness_path(uuid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// All states (for the notify listener and `status`).
    pub fn all(&self) -> Vec<DomainState> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        rd.filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.ends_with(".notify.json")
            })
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::new(d.path());
        assert_eq!(st.load("u").unwrap(), None);
        let s = DomainState {
            domain: "a".into(),
            uuid: "u".into(),
            machine: Some("a".into()),
            registered: true,
            how: Some(How::Create),
            ..Default::default()
        };
        st.save(&s).unwrap();
        assert_eq!(st.load("u").unwrap(), Some(s.clone()));
        assert_eq!(st.all(), vec![s]);
        st.remove("u").unwrap();
        st.remove("u").unwrap();
        assert_eq!(st.load("u").unwrap(), None);
    }
}
