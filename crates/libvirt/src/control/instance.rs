//! `io.systemd.MachineInstance` for one domain, served with zlink: what `machinectl
//! poweroff|reboot|terminate|pause|resume` call on systemd ≥ 261 (DESIGN §8).

use super::lv::{self, Op};
use super::model::{self, Event, Failure};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tracing::{info, warn};
use virt::connect::Connect;
use zlink::{introspect, Reply};

/// The libvirt connection, `None` while libvirtd is away.
pub type Shared = Arc<Mutex<Option<Connect>>>;

pub struct Instance {
    pub uuid: uuid::Uuid,
    pub name: String,
    pub conn: Shared,
    pub events: broadcast::Sender<Event>,
}

#[derive(Debug, Serialize, introspect::Type)]
pub struct Status {
    running: bool,
    status: String,
}

#[derive(Debug, Clone, Serialize, introspect::Type)]
pub struct EventReply {
    event: String,
    data: Option<serde_json::Value>,
}

/// A method's error reply. Written out by hand because a libvirt failure is answered as
/// `io.systemd.System` with an errno (machinectl prints its text), which is not one of the
/// interface's own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    NotConnected,
    NotSupported,
    System(i32),
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NotConnected => CallError::NotConnected,
            Failure::NotSupported => CallError::NotSupported,
            Failure::Errno(e) => CallError::System(e),
        }
    }
}

impl Serialize for CallError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            CallError::NotConnected => {
                m.serialize_entry("error", "io.systemd.MachineInstance.NotConnected")?
            }
            CallError::NotSupported => {
                m.serialize_entry("error", "io.systemd.MachineInstance.NotSupported")?
            }
            CallError::System(errno) => {
                m.serialize_entry("error", "io.systemd.System")?;
                m.serialize_entry("parameters", &serde_json::json!({ "errno": errno }))?;
            }
        }
        m.end()
    }
}

const NOT_CONNECTED: zlink::idl::Error<'static> = zlink::idl::Error::new(
    zlink::names::TypeName::from_static_str_unchecked("NotConnected"),
    &[],
    &[],
);
const NOT_SUPPORTED: zlink::idl::Error<'static> = zlink::idl::Error::new(
    zlink::names::TypeName::from_static_str_unchecked("NotSupported"),
    &[],
    &[],
);

impl introspect::ReplyError for CallError {
    const VARIANTS: &'static [&'static zlink::idl::Error<'static>] =
        &[&NOT_CONNECTED, &NOT_SUPPORTED];
}

impl Instance {
    /// Run `op` on a blocking thread with a reference of the connection of the moment.
    async fn call(&self, op: Op) -> Result<Option<(u32, i32)>, CallError> {
        let conn = self.conn.lock().expect("connection lock").clone();
        let Some(conn) = conn else {
            warn!(domain = %self.name, "machine control: domain {}: {op:?}: not connected to libvirt", self.name);
            return Err(CallError::NotConnected);
        };
        let uuid = self.uuid;
        let r = tokio::task::spawn_blocking(move || lv::perform(&conn, &uuid, op))
            .await
            .map_err(|_| CallError::System(libc::EIO))?;
        match r {
            Ok(v) => {
                if op != Op::Describe {
                    info!(domain = %self.name, "machine control: domain {}: {op:?} requested", self.name);
                }
                Ok(v)
            }
            Err(f) => {
                warn!(domain = %self.name, "machine control: domain {}: {op:?} failed: {}", self.name, f.msg);
                Err(f.how.into())
            }
        }
    }

    async fn act(&self, op: Op) -> Result<(), CallError> {
        self.call(op).await.map(|_| ())
    }

    async fn status(&self) -> Result<Status, CallError> {
        let (state, reason) = self
            .call(Op::Describe)
            .await?
            .ok_or(CallError::System(libc::EIO))?;
        let (running, status) = model::describe(state, reason);
        Ok(Status {
            running,
            status: status.into(),
        })
    }
}

fn event_reply(e: &Event) -> EventReply {
    EventReply {
        event: e.name.into(),
        data: Some(serde_json::json!({
            "libvirt": { "event": e.libvirt_event, "detail": e.libvirt_detail }
        })),
    }
}

#[zlink::service(
    interface = "io.systemd.MachineInstance",
    vendor = "virt-systemd",
    product = "virt-systemd control-service",
    version = env!("CARGO_PKG_VERSION"),
    url = "https://github.com/virt-systemd/virt-systemd"
)]
impl Instance {
    /// Destroy the domain (`virsh destroy`).
    async fn terminate(&mut self) -> Result<(), CallError> {
        self.act(Op::Terminate).await
    }

    /// Ask the guest to shut down (`virsh shutdown`).
    async fn power_off(&mut self) -> Result<(), CallError> {
        self.act(Op::PowerOff).await
    }

    /// Ask the guest to reboot (`virsh reboot`).
    async fn reboot(&mut self) -> Result<(), CallError> {
        self.act(Op::Reboot).await
    }

    async fn pause(&mut self) -> Result<(), CallError> {
        self.act(Op::Pause).await
    }

    async fn resume(&mut self) -> Result<(), CallError> {
        self.act(Op::Resume).await
    }

    async fn describe(&mut self) -> Result<Status, CallError> {
        self.status().await
    }

    /// The older name of `Describe`.
    #[zlink(rename = "QueryStatus")]
    async fn query_status(&mut self) -> Result<Status, CallError> {
        self.status().await
    }

    /// `READY` first, then the domain's libvirt lifecycle events until its QEMU ends.
    #[zlink(more)]
    async fn subscribe_events(
        &mut self,
        more: bool,
        filter: Option<Vec<String>>,
    ) -> impl Stream<Item = Reply<EventReply>> + Unpin {
        let ready = EventReply {
            event: "READY".into(),
            data: None,
        };
        let rx = more.then(|| self.events.subscribe());
        let first = futures_util::stream::iter([Reply::new(Some(ready)).set_continues(Some(more))]);
        let rest = futures_util::stream::unfold(rx, move |rx| {
            let filter = filter.clone();
            async move {
                let mut rx = rx?;
                loop {
                    match rx.recv().await {
                        Ok(e) if model::wanted(filter.as_deref(), &e) => {
                            let last = e.is_final();
                            let r = Reply::new(Some(event_reply(&e))).set_continues(Some(!last));
                            return Some((r, (!last).then_some(rx)));
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Box::pin(first.chain(rest))
    }

    /// Disks from passed file descriptors are not offered (yet): libvirt would need the fd
    /// handed on with virDomainFDAssociate and a disk definition built for it.
    async fn add_storage(
        &mut self,
        #[zlink(rename = "fileDescriptorIndex")] fd_index: i64,
        name: String,
        config: Option<String>,
    ) -> Result<(), CallError> {
        let _ = (fd_index, name, config);
        Err(CallError::NotSupported)
    }

    async fn remove_storage(&mut self, name: String) -> Result<(), CallError> {
        let _ = name;
        Err(CallError::NotSupported)
    }

    async fn replace_storage(
        &mut self,
        #[zlink(rename = "fileDescriptorIndex")] fd_index: i64,
        name: String,
    ) -> Result<(), CallError> {
        let _ = (fd_index, name);
        Err(CallError::NotSupported)
    }
}
