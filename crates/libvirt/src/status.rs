//! `status`: gather per-domain facts from libvirt, the hook's state files and machined,
//! then let the library build the rows (table or JSON; schema in `cli::status`).
//!
//! machined is asked only about running domains (or ones the hook has state for), under a
//! short deadline; when it cannot be reached the rows say nothing about machines and the
//! report says why, but `status` itself succeeds.

use crate::libvirt::{Dom, Libvirt};
use std::time::Duration;
use virt_systemd::cli::status::{machine_candidates, row, Input, Status, SCHEMA_VERSION};
use virt_systemd::cli::StatusArgs;
use virt_systemd::config::Config;
use virt_systemd::error::Result;
use virt_systemd::observe::{MachineView, Observer};
use virt_systemd::scope::Scope;
use virt_systemd::state::Store;

const BUS_TIMEOUT: Duration = Duration::from_millis(1500);

/// machined, connected on first use; after the first failure it is not asked again.
struct Machines {
    /// The user's bus for session domains (their machined is there), else the system's.
    address: Option<String>,
    bus: Option<std::result::Result<Observer, String>>,
    failed: Option<String>,
}

impl Machines {
    fn lookup(&mut self, names: &[String], uuid: Option<&str>) -> Option<MachineView> {
        if self.failed.is_some() || names.is_empty() {
            return None;
        }
        let bus = self
            .bus
            .get_or_insert_with(|| Observer::connect_to(self.address.clone(), BUS_TIMEOUT));
        let bus = match bus {
            Ok(b) => b,
            Err(e) => {
                self.failed = Some(e.clone());
                return None;
            }
        };
        let want = uuid
            .and_then(|u| uuid::Uuid::parse_str(u).ok())
            .map(|u| u.simple().to_string());
        for n in names {
            match bus.machine(n) {
                Ok(Some(m)) if m.id.is_none() || want.is_none() || m.id == want => return Some(m),
                Ok(_) => {}
                Err(e) => {
                    self.failed = Some(format!("cannot ask systemd-machined: {e}"));
                    return None;
                }
            }
        }
        None
    }
}

fn input(d: &Dom, store: &Store, m: &mut Machines) -> Result<Input> {
    let persistent = d.is_persistent()?;
    let running = d.is_active()?;
    let uuid = d.uuid().ok();
    let hook_state = uuid.as_deref().and_then(|u| store.load(u).ok().flatten());
    let machine = if running || hook_state.is_some() {
        let names = machine_candidates(&d.name, uuid.as_deref(), d.id(), hook_state.as_ref());
        m.lookup(&names, uuid.as_deref())
    } else {
        None
    };
    let readiness = if running {
        uuid.as_deref().and_then(|u| store.load_readiness(u))
    } else {
        None
    };
    Ok(Input {
        name: d.name.clone(),
        uuid,
        persistent,
        state: d.state(),
        running,
        inactive_xml: if persistent {
            Some(d.inactive_xml(false)?)
        } else {
            None
        },
        live_xml: if running { Some(d.live_xml()?) } else { None },
        readiness,
        hook_state,
        machine,
    })
}

pub fn status(lv: &Libvirt, a: &StatusArgs, cfg: &Config, scope: &Scope) -> Result<Status> {
    let doms = if a.domains.is_empty() {
        lv.domains()?
    } else {
        a.domains
            .iter()
            .map(|n| lv.domain(n))
            .collect::<Result<Vec<_>>>()?
    };
    let store = Store::new(&cfg.hook.state_dir);
    let mut m = Machines {
        address: match scope {
            Scope::Session { uid } => Some(format!(
                "unix:path={}/bus",
                virt_systemd::scope::user_runtime(*uid).display()
            )),
            Scope::System => None,
        },
        bus: None,
        failed: None,
    };
    let mut rows = Vec::new();
    for d in &doms {
        rows.push(row(input(d, &store, &mut m)?)?);
    }
    Ok(Status {
        version: SCHEMA_VERSION,
        machined: m.failed,
        domains: rows,
    })
}
