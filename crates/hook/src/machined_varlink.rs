//! `io.systemd.Machine.Register` over varlink: the only way to give machined a machine's
//! control address (systemd ≥ 261, DESIGN §8). One blocking call on the hook's thread
//! within the event's deadline. Written here rather than with zlink, which is async and
//! would bring a runtime into the hook, whose latency budget is a few milliseconds: the
//! protocol for one call is a NUL-terminated JSON object each way.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

/// machined's varlink socket (system scope).
pub const SOCKET: &str = "/run/systemd/machine/io.systemd.Machine";

/// What `Register` is given.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Register<'a> {
    pub name: &'a str,
    /// 32 hex digits.
    pub id: String,
    pub service: &'a str,
    pub class: &'a str,
    pub leader_process_id: ProcessId,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub if_indices: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v_sock_cid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_address: Option<&'a str>,
    /// false: QEMU is in a scope of its own already (libvirt's), which becomes the machine's.
    pub allocate_unit: bool,
}

impl<'a> Register<'a> {
    /// Our VM named `name` (`id`: the domain UUID in hex), led by QEMU's `leader`, pinned by
    /// its `pidfd` where there is one, with its vsock CID and the SSH address over it. No
    /// control address, no unit allocated: callers set what differs.
    pub fn vm<F: std::os::fd::AsFd>(
        name: &'a str,
        id: String,
        leader: u32,
        pidfd: Option<&F>,
        vsock_cid: Option<u32>,
    ) -> Register<'a> {
        Register {
            name,
            id,
            service: crate::machined::SERVICE,
            class: "vm",
            leader_process_id: ProcessId {
                pid: leader,
                pidfd_id: pidfd.and_then(pidfd_id),
            },
            if_indices: vec![],
            v_sock_cid: vsock_cid,
            ssh_address: vsock_cid.map(|c| format!("vsock/{c}")),
            control_address: None,
            allocate_unit: false,
        }
    }
}

/// The leader, pinned by its pidfd's inode (pidfs, Linux ≥ 6.9) when there is one.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessId {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidfd_id: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// No socket (systemd < 256, or machined not running).
    Absent(String),
    Timeout,
    /// An error reply: name and its parameters as JSON text.
    Reply {
        name: String,
        parameters: String,
    },
    Io(String),
}

impl CallError {
    /// machined does not know a parameter we passed (systemd < 261: `controlAddress`).
    pub fn is_unknown_parameter(&self) -> bool {
        matches!(self, CallError::Reply { name, .. }
            if name == "org.varlink.service.InvalidParameter")
    }
}

/// Call `io.systemd.Machine.Register` on `socket`, answering by `deadline`.
pub fn register(socket: &Path, r: &Register, deadline: Instant) -> Result<(), CallError> {
    call(socket, "io.systemd.Machine.Register", r, deadline).map(|_| ())
}

/// Does this machined take a control address? Its interface description says (a call
/// without side effects, unlike trying a registration).
pub fn takes_control_address(socket: &Path, deadline: Instant) -> Result<bool, CallError> {
    let p = call(
        socket,
        "org.varlink.service.GetInterfaceDescription",
        &serde_json::json!({"interface": "io.systemd.Machine"}),
        deadline,
    )?;
    Ok(p["description"]
        .as_str()
        .is_some_and(|d| d.contains("controlAddress:")))
}

/// One call; its reply's parameters.
pub fn call(
    socket: &Path,
    method: &str,
    parameters: &impl serde::Serialize,
    deadline: Instant,
) -> Result<serde_json::Value, CallError> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(CallError::Timeout)
    };
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            CallError::Absent(format!("{}: {e}", socket.display()))
        }
        _ => CallError::Io(format!("{}: {e}", socket.display())),
    })?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => CallError::Timeout,
        _ => CallError::Io(e.to_string()),
    };
    let mut msg = serde_json::to_vec(&serde_json::json!({
        "method": method,
        "parameters": parameters,
    }))
    .expect("serializable");
    msg.push(0);
    s.set_write_timeout(Some(left()?)).map_err(io)?;
    s.write_all(&msg).map_err(io)?;
    let mut reply = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    while !reply.contains(&0) {
        s.set_read_timeout(Some(left()?)).map_err(io)?;
        let n = s.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Err(CallError::Io("machined closed the connection".into()));
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() > 1 << 20 {
            return Err(CallError::Io("reply too large".into()));
        }
    }
    let end = reply.iter().position(|&b| b == 0).expect("checked");
    parse_reply(&reply[..end])
}

/// `{"parameters":{…}}` or `{"error":NAME,"parameters":{…}}`: the parameters, or the error.
fn parse_reply(bytes: &[u8]) -> Result<serde_json::Value, CallError> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| CallError::Io(format!("malformed varlink reply: {e}")))?;
    match v.get("error").and_then(|e| e.as_str()) {
        None => Ok(v["parameters"].take()),
        Some(name) => Err(CallError::Reply {
            name: name.to_string(),
            parameters: v
                .get("parameters")
                .map(|p| p.to_string())
                .unwrap_or_default(),
        }),
    }
}

/// The pidfd's inode: the process's identity that survives PID reuse (pidfs). `None` on
/// kernels where pidfds are anonymous inodes (all alike).
pub fn pidfd_id(pidfd: &impl std::os::fd::AsFd) -> Option<u64> {
    let st = rustix::fs::fstat(pidfd).ok()?;
    // pidfs reports its own magic; anon_inode pidfds share one inode, useless as an id.
    let fs = rustix::fs::fstatfs(pidfd).ok()?;
    (fs.f_type as u64 == 0x5049_4446).then_some(st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_message_uses_machined_names() {
        let r = Register {
            name: "web",
            id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
            service: "virt-systemd",
            class: "vm",
            leader_process_id: ProcessId {
                pid: 42,
                pidfd_id: Some(7),
            },
            if_indices: vec![3],
            v_sock_cid: Some(5),
            ssh_address: Some("vsock/5".into()),
            control_address: Some("/run/virt-systemd/control/x"),
            allocate_unit: false,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["leaderProcessId"]["pidfdId"], 7);
        assert_eq!(v["ifIndices"][0], 3);
        assert_eq!(v["vSockCid"], 5);
        assert_eq!(v["sshAddress"], "vsock/5");
        assert_eq!(v["controlAddress"], "/run/virt-systemd/control/x");
        assert_eq!(v["allocateUnit"], false);
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(br#"{"parameters":{"a":1}}"#),
            Ok(serde_json::json!({"a": 1}))
        );
        let e = parse_reply(
            br#"{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"controlAddress"}}"#,
        )
        .unwrap_err();
        assert!(e.is_unknown_parameter());
        assert!(matches!(
            parse_reply(br#"{"error":"io.systemd.Machine.MachineExists"}"#),
            Err(CallError::Reply { .. })
        ));
        assert!(matches!(parse_reply(b"nope"), Err(CallError::Io(_))));
    }

    #[test]
    fn pidfd_of_self_has_an_id_on_pidfs() {
        let fd = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        // Either pidfs (an id) or an older kernel (none); never a bogus shared inode.
        if let Some(id) = pidfd_id(&fd) {
            assert_ne!(id, 0);
        }
    }
}
