//! The D-Bus client handshake in one write, as sd-bus does it: `AUTH EXTERNAL`,
//! `NEGOTIATE_UNIX_FD`, `BEGIN` and the `Hello` call go out together, then their answers are
//! read. zbus waits for the `AUTH` answer before it sends the rest, a round trip the hook
//! paid on every libvirt event (issue 4's latency target). zbus then takes the socket as
//! already authenticated. Anything unexpected is an error: the caller falls back to zbus's
//! own handshake on a new connection.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

/// A Hello reply larger than this is not one.
const MAX_REPLY: usize = 64 * 1024;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Authenticate on `s` as this process's effective user, negotiate fd passing and say
/// Hello; returns the socket, ready for messages, and the server's GUID.
pub fn handshake(mut s: UnixStream) -> io::Result<(UnixStream, String)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() }.to_string();
    let uid_hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    let hello = zbus::Message::method_call("/org/freedesktop/DBus", "Hello")
        .and_then(|m| m.destination("org.freedesktop.DBus"))
        .and_then(|m| m.interface("org.freedesktop.DBus"))
        .and_then(|m| m.build(&()))
        .map_err(|e| bad(&e.to_string()))?;
    let mut out =
        format!("\0AUTH EXTERNAL {uid_hex}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n").into_bytes();
    out.extend_from_slice(hello.data().bytes());
    s.write_all(&out)?;

    // Read exactly the three answers: the bus sends NameAcquired right after the Hello
    // reply, and that must stay in the socket for zbus. A GUID is 32 hex digits, so the two
    // answer lines have fixed lengths; anything else (REJECTED, ERROR) is not them.
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut lines = [0u8; OK_LINE + AGREE_LINE.len()];
    s.read_exact(&mut lines)?;
    let (ok, agree) = lines.split_at(OK_LINE);
    if !ok.starts_with(b"OK ") || !ok.ends_with(b"\r\n") || agree != AGREE_LINE {
        return Err(bad("unexpected answer to AUTH"));
    }
    let guid = String::from_utf8_lossy(&ok[3..OK_LINE - 2]).into_owned();
    let mut reply = vec![0u8; 16];
    s.read_exact(&mut reply)?;
    let n = message_len(&reply).filter(|&n| (16..=MAX_REPLY).contains(&n));
    let n = n.ok_or_else(|| bad("not a D-Bus message"))?;
    reply.resize(n, 0);
    s.read_exact(&mut reply[16..])?;
    const METHOD_RETURN: u8 = 2;
    if reply[1] != METHOD_RETURN {
        return Err(bad("Hello failed"));
    }
    s.set_read_timeout(None)?;
    Ok((s, guid))
}

/// `OK <32 hex digits>\r\n`
const OK_LINE: usize = 3 + 32 + 2;
const AGREE_LINE: &[u8] = b"AGREE_UNIX_FD\r\n";
/// The bus answers at once; the hook's own deadline bounds the rest anyway.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Whole length of the D-Bus message at the start of `b`, once its fixed header is there.
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
