//! The hook's D-Bus client: blocking, on the calling thread, for a process that makes a few
//! calls and exits. zbus marshals the messages; this module moves them.
//!
//! Why not a zbus connection: it starts a reactor thread and hands every reply across
//! threads, and it waits for each handshake answer before the next step. Here the
//! handshake goes out as sd-bus sends it — `AUTH EXTERNAL`, `NEGOTIATE_UNIX_FD`, `BEGIN` and
//! `Hello` in one write — and the first calls go out in that same write, so the hook's
//! lookups cost no round trip of their own (issue 4's latency target). Every wait is bounded
//! by one deadline.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;
use zbus::message::Type;
use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{DynamicType, Endian};
use zbus::Message;

/// A message larger than this is not one the hook could want.
const MAX_MESSAGE: usize = 1 << 20;
const HELLO_SERIAL: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The deadline passed before the answer came.
    #[error("no answer in time")]
    Timeout,
    /// The bus did not take us as a client (authentication, protocol).
    #[error("{0}")]
    Handshake(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Message(#[from] zbus::Error),
}

pub struct Wire {
    sock: UnixStream,
    deadline: Instant,
    /// Bytes of the handshake, then messages, not yet written.
    queued: Vec<u8>,
    /// Queued messages (they own the fds that go out with the next write).
    queued_msgs: Vec<Message>,
    inbuf: Vec<u8>,
    /// `None` until the bus has answered `AUTH` (and `NEGOTIATE_UNIX_FD`).
    guid: Option<String>,
    unix_fds: bool,
    replies: HashMap<u32, Message>,
    next_serial: u32,
}

impl Wire {
    /// Start a client on `sock` (connected to a bus); the handshake is queued and goes out
    /// with the first call. Nothing here or later waits past `deadline`.
    pub fn new(sock: UnixStream, deadline: Instant) -> Result<Wire, WireError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() }.to_string();
        let uid_hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        let mut w = Wire {
            sock,
            deadline,
            queued: format!("\0AUTH EXTERNAL {uid_hex}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n")
                .into_bytes(),
            queued_msgs: Vec::new(),
            inbuf: Vec::with_capacity(8192),
            guid: None,
            unix_fds: false,
            replies: HashMap::new(),
            next_serial: HELLO_SERIAL,
        };
        // Writes are small and the bus reads them at once; bound them anyway.
        w.sock.set_write_timeout(Some(w.remaining()?))?;
        w.queue(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            "org.freedesktop.DBus",
            &(),
        )?;
        Ok(w)
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Result<std::time::Duration, WireError> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(WireError::Timeout),
        }
    }

    /// The bus's GUID, once it has answered.
    pub fn guid(&self) -> Option<&str> {
        self.guid.as_deref()
    }

    /// Whether the bus agreed to pass file descriptors (known once it has answered).
    pub fn unix_fds(&self) -> bool {
        self.unix_fds
    }

    /// Queue a method call; it goes out with the next `reply` (or `flush`). Returns its serial.
    pub fn queue<B>(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        destination: &str,
        body: &B,
    ) -> Result<u32, WireError>
    where
        B: serde::Serialize + DynamicType,
    {
        let serial = self.next_serial;
        self.next_serial += 1;
        let m = Message::method_call(path, member)?
            .destination(destination)?
            .interface(interface)?
            .serial(NonZeroU32::new(serial).expect("serials start at 1"))
            .build(body)?;
        self.queued.extend_from_slice(m.data().bytes());
        self.queued_msgs.push(m);
        Ok(serial)
    }

    /// Write everything queued, with the queued messages' fds.
    pub fn flush(&mut self) -> Result<(), WireError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let fds: Vec<BorrowedFd> = self
            .queued_msgs
            .iter()
            .flat_map(|m| m.data().fds().iter().map(|f| f.as_fd()))
            .collect();
        let mut space =
            vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("too many file descriptors").into());
        }
        let mut sent = 0;
        let mut result = Ok(());
        while sent < self.queued.len() {
            match rustix::net::sendmsg(
                &self.sock,
                &[IoSlice::new(&self.queued[sent..])],
                &mut control,
                rustix::net::SendFlags::NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                // Nothing was sent: again, fds included.
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    result = Err(io::Error::from(e).into());
                    break;
                }
            }
            // The fds went with the first part.
            control.clear();
        }
        // Sent or not, never again: a retry could repeat half a message.
        self.queued.clear();
        self.queued_msgs.clear();
        result
    }

    /// The answer (method return or error) to call `serial`, waiting for it if need be.
    pub fn reply(&mut self, serial: u32) -> Result<Message, WireError> {
        self.flush()?;
        loop {
            if let Some(m) = self.replies.remove(&serial) {
                return Ok(m);
            }
            self.read_more()?;
            self.take_input()?;
        }
    }

    fn read_more(&mut self) -> Result<(), WireError> {
        let left = self.remaining()?;
        let mut fds = [rustix::event::PollFd::new(
            &self.sock,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::time::Timespec::try_from(left).unwrap_or(rustix::time::Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Err(WireError::Timeout),
            Ok(_) => {}
            // The caller loops; the deadline still holds.
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(io::Error::from(e).into()),
        }
        let len = self.inbuf.len();
        self.inbuf.resize(len + 8192, 0);
        let n = match self.sock.read(&mut self.inbuf[len..]) {
            Ok(n) => n,
            Err(e) => {
                self.inbuf.truncate(len);
                return match e.kind() {
                    io::ErrorKind::Interrupted => Ok(()),
                    _ => Err(e.into()),
                };
            }
        };
        self.inbuf.truncate(len + n);
        if n == 0 {
            return Err(if self.guid.is_none() {
                WireError::Handshake("the bus closed the connection during authentication".into())
            } else {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the bus closed the connection",
                )
                .into()
            });
        }
        Ok(())
    }

    /// Consume the complete answers and messages at the start of `inbuf`.
    fn take_input(&mut self) -> Result<(), WireError> {
        let mut at = 0;
        if self.guid.is_none() {
            // `OK <guid>` then `AGREE_UNIX_FD` (or `ERROR …`: no fd passing).
            let mut lines = Vec::with_capacity(2);
            for _ in 0..2 {
                let Some(end) = memchr::memmem::find(&self.inbuf[at..], b"\r\n") else {
                    if self.inbuf.len() > 4096 {
                        return Err(WireError::Handshake("unexpected answer to AUTH".into()));
                    }
                    return Ok(());
                };
                lines.push(&self.inbuf[at..at + end]);
                at += end + 2;
            }
            let guid = lines[0]
                .strip_prefix(b"OK ")
                .filter(|g| g.len() == 32 && g.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| {
                    WireError::Handshake(format!(
                        "the bus refused authentication: {}",
                        String::from_utf8_lossy(lines[0])
                    ))
                })?;
            self.unix_fds = lines[1] == b"AGREE_UNIX_FD";
            self.guid = Some(String::from_utf8_lossy(guid).into_owned());
        }
        while let Some(n) = message_len(&self.inbuf[at..]) {
            if !(16..=MAX_MESSAGE).contains(&n) {
                return Err(
                    io::Error::new(io::ErrorKind::InvalidData, "not a D-Bus message").into(),
                );
            }
            if self.inbuf.len() - at < n {
                break;
            }
            let bytes = self.inbuf[at..at + n].to_vec();
            at += n;
            let endian = if bytes[0] == b'l' {
                Endian::Little
            } else {
                Endian::Big
            };
            // SAFETY: from_bytes is unsafe only in that the bytes may be malformed; this is
            // how zbus's own socket reader makes every message it receives (framed by the
            // fixed header, context at position 0), and all later decoding is checked.
            let m = unsafe { Message::from_bytes(Data::new(bytes, Context::new_dbus(endian, 0))) }?;
            if matches!(m.message_type(), Type::MethodReturn | Type::Error) {
                if let Some(s) = m.header().reply_serial() {
                    if s.get() != HELLO_SERIAL {
                        self.replies.insert(s.get(), m);
                    }
                }
            }
            // Anything else (the bus's NameAcquired signal) is not for us to act on.
        }
        self.inbuf.drain(..at);
        Ok(())
    }
}

/// Whole length of the D-Bus message at the start of `b`, once its fixed header is there
/// (`usize::MAX` when `b` does not start like a message).
fn message_len(b: &[u8]) -> Option<usize> {
    if b.len() < 16 {
        return None;
    }
    let le = match b[0] {
        b'l' => true,
        b'B' => false,
        _ => return Some(usize::MAX),
    };
    let word = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        (if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }) as usize
    };
    let (body, fields) = (word(4), word(12));
    // The header fields array is padded to 8 bytes before the body.
    Some((16 + fields).div_ceil(8) * 8 + body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_both_byte_orders() {
        let mut h = [0u8; 16];
        h[0] = b'l';
        h[4] = 9; // body
        h[12] = 0x45; // fields
        assert_eq!(message_len(&h), Some(0x58 + 9));
        let mut h = [0u8; 16];
        h[0] = b'B';
        h[7] = 9;
        h[15] = 0x40;
        assert_eq!(message_len(&h), Some(0x50 + 9));
        assert_eq!(message_len(&h[..15]), None);
        assert_eq!(message_len(b"X234567890123456"), Some(usize::MAX));
    }
}
