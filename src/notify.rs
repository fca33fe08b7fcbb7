//! Readiness notification to a service manager (systemd's `sd_notify` protocol, `Type=notify`).
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` for an abstract socket). Without that variable every call does nothing, so
//! the same binary runs under systemd, control.sh or a test harness. Our own few lines instead of
//! libsystemd: the protocol is stable and small, and a C dependency is not worth it.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the manager that start-up finished: the Thrift port is open and `/ready` answers 200.
pub fn ready() {
    send(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving",
        std::process::id()
    ));
}

/// Tells the manager that the drain began (systemd then shows the unit as deactivating).
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining");
}

/// Sends `state` if a manager asked for notifications; a failure is logged, never fatal, since
/// a manager that stopped listening cannot be helped by stopping the proxy.
fn send(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send_to(&target.to_string_lossy(), state) {
        tracing::warn!(socket = %target.to_string_lossy(), error = %e, "service manager notification failed");
    }
}

/// One datagram to `target`; non-blocking, so a full receive queue cannot stall a runtime thread.
fn send_to(target: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let addr = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if target.starts_with('/') => SocketAddr::from_pathname(target)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name",
            ))
        }
    };
    let n = sock.send_to_addr(state.as_bytes(), &addr)?;
    if n != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).expect("bind");
        send_to(path.to_str().expect("utf-8 path"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pproxy-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind");
        send_to(&format!("@{name}"), "STOPPING=1").expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_relative_target_is_refused() {
        assert!(send_to("relative/notify", "READY=1").is_err());
    }
}
