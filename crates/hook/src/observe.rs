//! Read-only D-Bus queries for `status` and `doctor`: a machine's state, which methods
//! machined's Manager offers (is `RegisterMachineEx` there?), systemd's version.
//!
//! Everything is bounded: the connection is made on a helper thread and abandoned after the
//! deadline, and every call has the same method timeout, so a hung bus cannot hang `status`.
//! An unreachable bus or machined is an answer (`Err(message)`), never a failure of the caller.

use std::sync::mpsc;
use std::time::Duration;

const MACHINED: &str = "org.freedesktop.machine1";
const MACHINED_PATH: &str = "/org/freedesktop/machine1";
const MANAGER: &str = "org.freedesktop.machine1.Manager";
const MACHINE: &str = "org.freedesktop.machine1.Machine";

/// A machine as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MachineView {
    pub name: String,
    /// machined's `State`: `opening`, `running`, `closing`.
    pub state: Option<String>,
    /// Who registered it: `virt-systemd`, `libvirt-qemu`, …
    pub service: Option<String>,
    pub class: Option<String>,
    /// The machine ID as 32 hex digits (the domain UUID for our registrations).
    pub id: Option<String>,
    pub leader: Option<u32>,
    pub unit: Option<String>,
    /// `VSockCID` (systemd ≥ 259; absent or 4294967295 when unset).
    pub vsock_cid: Option<u32>,
}

/// A connection to the system bus (or `DBUS_SYSTEM_BUS_ADDRESS`).
pub struct Observer {
    conn: zbus::blocking::Connection,
}

/// Run `f` on a thread; `None` when it does not finish within `d`.
pub fn bounded<T: Send + 'static>(
    d: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(d).ok()
}

fn method_error(e: zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, msg, _) => match msg {
            Some(m) if !m.is_empty() => format!("{name}: {m}"),
            _ => name.to_string(),
        },
        e => e.to_string(),
    }
}

impl Observer {
    /// Connect within `timeout`; calls then time out after `timeout` each.
    pub fn connect(timeout: Duration) -> Result<Observer, String> {
        Observer::connect_to(None, timeout)
    }

    /// The bus at `address` (a user's: `unix:path=/run/user/UID/bus`, where the user's
    /// machined is), or the system bus.
    pub fn connect_to(address: Option<String>, timeout: Duration) -> Result<Observer, String> {
        let which = if address.is_some() { "user" } else { "system" };
        let res = bounded(timeout, move || {
            let b = match address.or_else(|| std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok()) {
                Some(a) => zbus::blocking::connection::Builder::address(a.as_str()),
                None => zbus::blocking::connection::Builder::system(),
            }
            .map_err(|e| e.to_string())?;
            b.method_timeout(timeout).build().map_err(|e| e.to_string())
        });
        match res {
            Some(Ok(conn)) => Ok(Observer { conn }),
            Some(Err(e)) => Err(format!("cannot reach the {which} bus: {e}")),
            None => Err(format!(
                "the {which} bus did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    /// `GetMachine(name)` and its properties; `Ok(None)` when there is no such machine.
    pub fn machine(&self, name: &str) -> Result<Option<MachineView>, String> {
        let m = zbus::blocking::Proxy::new(&self.conn, MACHINED, MACHINED_PATH, MANAGER)
            .map_err(|e| e.to_string())?;
        let path: zbus::zvariant::OwnedObjectPath = match m.call("GetMachine", &(name,)) {
            Ok(p) => p,
            Err(zbus::Error::MethodError(n, _, _))
                if n.as_str() == crate::machined::NO_SUCH_MACHINE =>
            {
                return Ok(None)
            }
            Err(e) => return Err(method_error(e)),
        };
        // One GetAll: a slow machined costs one timeout, not one per property.
        let p = zbus::blocking::Proxy::new(
            &self.conn,
            MACHINED,
            path,
            "org.freedesktop.DBus.Properties",
        )
        .map_err(|e| e.to_string())?;
        let props: std::collections::HashMap<String, zbus::zvariant::OwnedValue> =
            p.call("GetAll", &(MACHINE,)).map_err(method_error)?;
        let get = |k: &str| props.get(k).and_then(|v| v.try_clone().ok());
        let string = |k: &str| get(k).and_then(|v| String::try_from(v).ok());
        let u32_ = |k: &str| get(k).and_then(|v| u32::try_from(v).ok());
        let id: Option<Vec<u8>> = get("Id").and_then(|v| Vec::<u8>::try_from(v).ok());
        Ok(Some(MachineView {
            name: string("Name").unwrap_or_else(|| name.to_string()),
            state: string("State"),
            service: string("Service"),
            class: string("Class"),
            id: id
                .filter(|b| b.len() == 16)
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
            leader: u32_("Leader"),
            unit: string("Unit"),
            vsock_cid: u32_("VSockCID").filter(|&c| c != u32::MAX),
        }))
    }

    /// Method names of machined's Manager interface, by introspection (this also
    /// activates machined when it is bus-activatable).
    pub fn machined_methods(&self) -> Result<Vec<String>, String> {
        let p = zbus::blocking::Proxy::new(
            &self.conn,
            MACHINED,
            MACHINED_PATH,
            "org.freedesktop.DBus.Introspectable",
        )
        .map_err(|e| e.to_string())?;
        let xml: String = p.call("Introspect", &()).map_err(method_error)?;
        manager_methods(&xml)
    }

    /// systemd's `Version` property (PID 1 over D-Bus).
    pub fn systemd_version(&self) -> Result<String, String> {
        let p = zbus::blocking::Proxy::new(
            &self.conn,
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
        )
        .map_err(|e| e.to_string())?;
        p.get_property::<String>("Version")
            .map_err(|e| e.to_string())
    }
}

/// Method names of `org.freedesktop.machine1.Manager` in an introspection document: the
/// `name`s of the `<method>` children of the first `<interface name=…Manager>`. Read with
/// quick-xml's event reader to the end, so a document it finds ill-formed (or that ends
/// inside an element) is refused; its DOCTYPE (D-Bus introspection has one) is skipped.
pub fn manager_methods(xml: &str) -> Result<Vec<String>, String> {
    use quick_xml::events::{BytesStart, Event};
    let not_xml = |e: &dyn std::fmt::Display| format!("introspection data is not XML: {e}");
    let name = |e: &BytesStart| -> Result<Option<String>, String> {
        match e.try_get_attribute("name").map_err(|e| not_xml(&e))? {
            None => Ok(None),
            Some(a) => Ok(Some(
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| not_xml(&e))?
                    .into_owned(),
            )),
        }
    };
    let mut reader = quick_xml::Reader::from_str(xml);
    // Open elements, and how deep the Manager interface is (its children are one deeper).
    let mut depth = 0usize;
    let mut iface: Option<usize> = None;
    let mut done = false;
    let mut methods = Vec::new();
    loop {
        let (e, empty) = match reader.read_event().map_err(|e| not_xml(&e))? {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if iface == Some(depth) {
                    done = true;
                    iface = None;
                }
                depth -= 1;
                continue;
            }
            Event::Text(t) if depth == 0 && !t.iter().all(u8::is_ascii_whitespace) => {
                return Err(not_xml(&"text outside the root element"));
            }
            Event::GeneralRef(_) if depth == 0 => {
                return Err(not_xml(&"text outside the root element"));
            }
            Event::Eof if depth > 0 => return Err(not_xml(&"it ends inside an element")),
            Event::Eof => break,
            _ => continue,
        };
        depth += 1;
        let local = e.local_name();
        match iface {
            Some(d) if depth == d + 1 && local.as_ref() == b"method" => {
                methods.extend(name(&e)?);
            }
            None if !done
                && local.as_ref() == b"interface"
                && name(&e)?.as_deref() == Some(MANAGER) =>
            {
                done = empty;
                iface = (!empty).then_some(depth);
            }
            _ => {}
        }
        if empty {
            depth -= 1;
        }
    }
    if !done {
        return Err(format!("{MACHINED_PATH} has no {MANAGER} interface"));
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection() {
        let xml = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node><interface name="org.freedesktop.DBus.Peer"><method name="Ping"/></interface>
<interface name="org.freedesktop.machine1.Manager">
 <method name="GetMachine"><arg type="s" direction="in"/></method>
 <method name="RegisterMachineEx"><arg type="s"/><arg type="a(sv)"/></method>
 <property name="PoolPath" type="s" access="read"/>
</interface><node name="machine"/></node>"#;
        assert_eq!(
            manager_methods(xml).unwrap(),
            vec!["GetMachine", "RegisterMachineEx"]
        );
        assert!(manager_methods("<node/>").is_err());
        assert!(manager_methods("not xml").is_err());
    }

    #[test]
    fn unreachable_bus_is_an_answer() {
        // A path nobody listens on: connect fails at once with a message. The bound only
        // catches a hang (a loaded machine may run the thread late, never a minute late).
        let addr = "unix:path=/nonexistent/virt-systemd-test-bus";
        let r = bounded(Duration::from_secs(60), move || {
            zbus::blocking::connection::Builder::address(addr)
                .and_then(|b| b.build())
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        assert!(matches!(r, Some(Err(_))));
    }
}
