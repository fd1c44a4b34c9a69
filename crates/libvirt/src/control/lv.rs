//! The control service's libvirt side: one connection whose lifecycle, reboot and close
//! events arrive on libvirt's default event loop (a thread of ours) and go into a channel,
//! and the blocking calls the varlink methods make. The safe `virt` crate has no domain
//! events, so the three callbacks are registered through `virt::sys` here, and only here.

use super::model::{self, Failure};
use std::ffi::{c_int, c_void, CStr};
use std::sync::Once;
use tokio::sync::mpsc::UnboundedSender;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

/// What the event thread reports.
#[derive(Debug)]
pub enum Msg {
    Lifecycle {
        uuid: uuid::Uuid,
        event: i32,
        detail: i32,
        name: Option<String>,
    },
    Reboot(uuid::Uuid),
    /// The connection closed (libvirtd stopped or restarted, keepalive timed out).
    Closed(i32),
}

/// What a varlink method asks of libvirt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `virsh shutdown`: the hypervisor's default (ACPI power button for QEMU).
    PowerOff,
    /// `virsh reboot`.
    Reboot,
    /// `virsh destroy`.
    Terminate,
    Pause,
    Resume,
    /// State and reason.
    Describe,
}

/// A failed call: how to answer, and libvirt's message for the log.
#[derive(Debug)]
pub struct Failed {
    pub how: Failure,
    pub msg: String,
}

static EVENT_LOOP: Once = Once::new();

/// Start libvirt's event loop thread (before the first connection: keepalive and events
/// need it). Idempotent.
pub fn start_event_loop() {
    EVENT_LOOP.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            // Without it there are no events; reconciliation still runs on reconnects.
            tracing::error!("libvirt event loop: {}", e.message());
            return;
        }
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| loop {
                if virt::event::event_run_default_impl().is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
            .expect("spawn the libvirt event thread");
    });
}

unsafe fn sender<'a>(opaque: *mut c_void) -> &'a UnboundedSender<Msg> {
    &*(opaque as *const UnboundedSender<Msg>)
}

unsafe extern "C" fn free_sender(opaque: *mut c_void) {
    drop(Box::from_raw(opaque as *mut UnboundedSender<Msg>));
}

unsafe fn uuid_of(dom: sys::virDomainPtr) -> Option<uuid::Uuid> {
    let mut buf = [0 as std::ffi::c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    if sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) < 0 {
        return None;
    }
    CStr::from_ptr(buf.as_ptr()).to_str().ok()?.parse().ok()
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    if let Some(uuid) = uuid_of(dom) {
        let n = sys::virDomainGetName(dom);
        let name = (!n.is_null()).then(|| CStr::from_ptr(n).to_string_lossy().into_owned());
        let _ = sender(opaque).send(Msg::Lifecycle {
            uuid,
            event,
            detail,
            name,
        });
    }
    0
}

unsafe extern "C" fn on_reboot(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    opaque: *mut c_void,
) {
    if let Some(uuid) = uuid_of(dom) {
        let _ = sender(opaque).send(Msg::Reboot(uuid));
    }
}

unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    let _ = sender(opaque).send(Msg::Closed(reason));
}

fn boxed(tx: &UnboundedSender<Msg>) -> *mut c_void {
    Box::into_raw(Box::new(tx.clone())) as *mut c_void
}

fn failed(e: &virt::error::Error) -> Failed {
    Failed {
        how: model::failure(e.code().to_raw() as i32),
        msg: e.message().trim().to_string(),
    }
}

/// Open `uri` with keepalive, and have its events sent to `tx`.
pub fn open(uri: &str, tx: &UnboundedSender<Msg>) -> Result<Connect, Failed> {
    virt::error::clear_error_callback();
    let conn = Connect::open(Some(uri)).map_err(|e| failed(&e))?;
    // A dead libvirtd is noticed within 5 × 3 s even when its socket does not close.
    // Drivers in this process (test:///) have no keepalive, and need none.
    if let Err(e) = conn.set_keep_alive(5, 3) {
        if model::failure(e.code().to_raw() as i32) != Failure::NotSupported {
            return Err(failed(&e));
        }
    }
    // SAFETY: the callbacks match libvirt's signatures for these event IDs (libvirt casts
    // them back to the specific type before calling); each opaque is a leaked Box freed
    // by libvirt through `free_sender` when the callback is deregistered or the
    // connection goes away.
    unsafe {
        let p = conn.as_ptr();
        let lifecycle: unsafe extern "C" fn(
            sys::virConnectPtr,
            sys::virDomainPtr,
            c_int,
            c_int,
            *mut c_void,
        ) -> c_int = on_lifecycle;
        let generic: unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void) =
            std::mem::transmute(lifecycle as *const ());
        let reboot: unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void) =
            on_reboot;
        for (id, cb) in [
            (sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE, generic),
            (sys::VIR_DOMAIN_EVENT_ID_REBOOT, reboot),
        ] {
            let o = boxed(tx);
            let rc = sys::virConnectDomainEventRegisterAny(
                p,
                std::ptr::null_mut(),
                id as c_int,
                Some(cb),
                o,
                Some(free_sender),
            );
            if rc < 0 {
                free_sender(o);
                return Err(failed(&virt::error::Error::last_error()));
            }
        }
        let o = boxed(tx);
        if sys::virConnectRegisterCloseCallback(p, Some(on_close), o, Some(free_sender)) < 0 {
            free_sender(o);
            return Err(failed(&virt::error::Error::last_error()));
        }
    }
    Ok(conn)
}

/// The running domains: UUID and name.
pub fn running(conn: &Connect) -> Result<Vec<(uuid::Uuid, String)>, Failed> {
    let doms = conn
        .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        .map_err(|e| failed(&e))?;
    Ok(doms
        .iter()
        .filter_map(|d| {
            let u = d.uuid_string().ok()?.parse().ok()?;
            Some((u, d.name().unwrap_or_default()))
        })
        .collect())
}

/// Perform `op` on the domain. `Describe` answers (state, reason); the others `None`.
pub fn perform(conn: &Connect, uuid: &uuid::Uuid, op: Op) -> Result<Option<(u32, i32)>, Failed> {
    let dom: Domain = conn
        .lookup_domain_by_uuid_string(&uuid.hyphenated().to_string())
        .map_err(|e| failed(&e))?;
    let r = match op {
        Op::PowerOff => dom.shutdown(),
        Op::Reboot => dom.reboot(0),
        Op::Terminate => dom.destroy(),
        Op::Pause => dom.suspend(),
        Op::Resume => dom.resume(),
        Op::Describe => {
            // Raw: the crate's typed reason cannot be turned back into libvirt's number.
            let (mut state, mut reason): (c_int, c_int) = (-1, -1);
            // SAFETY: a valid domain and two out-parameters.
            if unsafe { sys::virDomainGetState(dom.as_ptr(), &mut state, &mut reason, 0) } < 0 {
                return Err(failed(&virt::error::Error::last_error()));
            }
            return Ok(Some((state as u32, reason)));
        }
    };
    r.map(|_| None).map_err(|e| failed(&e))
}

/// Mirror the guest's readiness into the running domain's live metadata (never the
/// persistent definition), where it travels with a migration (`core::notify::carry`).
pub fn set_readiness(
    conn: &Connect,
    uuid: &uuid::Uuid,
    r: &virt_systemd::notify::protocol::Readiness,
) -> Result<(), Failed> {
    use virt_systemd::notify::carry;
    let dom: Domain = conn
        .lookup_domain_by_uuid_string(&uuid.hyphenated().to_string())
        .map_err(|e| failed(&e))?;
    dom.set_metadata(
        sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
        Some(&carry::element(r)),
        Some(carry::PREFIX),
        Some(carry::READINESS_NS),
        sys::VIR_DOMAIN_AFFECT_LIVE,
    )
    .map_err(|e| failed(&e))
}
