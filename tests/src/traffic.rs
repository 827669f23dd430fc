//! Traffic between namespaces: one-shot probes ([`tcp_connects`],
//! [`pings`]) and long-lived TCP ([`EchoServer`], [`connect`]) whose sockets
//! stay in the namespace they were opened in while the test drives them from
//! any thread, so a connection can outlive a daemon restart under test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;
use crate::netns::Netns;

/// Whether a TCP connection from `from` to `addr` (`ip:port`, `[ip6]:port`)
/// is established within 2 s.
pub fn tcp_connects(from: &Netns, addr: SocketAddr) -> bool {
    connect(from, addr, Duration::from_secs(2)).is_ok()
}

/// Whether one ping from `from` to `addr` is answered within 1 s.
pub fn pings(from: &Netns, addr: &str) -> bool {
    from.cmd("ping")
        .args(["-c1", "-W1", addr])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A TCP connection opened from inside `from` (it keeps that namespace),
/// with 5 s read and write timeouts.
pub fn connect(from: &Netns, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    let stream = from
        .run(|| TcpStream::connect_timeout(&addr, timeout))?
        .map_err(|e| Error::io(format!("connecting to {addr} from {}", from.name()), e))?;
    for set in [TcpStream::set_read_timeout, TcpStream::set_write_timeout] {
        set(&stream, Some(Duration::from_secs(5)))
            .map_err(|e| Error::io(format!("setting timeouts on {addr}"), e))?;
    }
    Ok(stream)
}

/// Sends `message` on `stream` and reads back as many bytes: what an
/// [`EchoServer`] returns.
pub fn echo(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(message)?;
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

/// A TCP echo server listening in a namespace until dropped; each
/// connection is served on its own thread.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `0.0.0.0:port` (or `[::]:port` with `ipv6`) inside `ns`.
    pub fn start(ns: &Netns, port: u16, ipv6: bool) -> Result<EchoServer, Error> {
        let bind: SocketAddr = if ipv6 {
            (std::net::Ipv6Addr::UNSPECIFIED, port).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, port).into()
        };
        let listener = ns
            .run(|| TcpListener::bind(bind))?
            .map_err(|e| Error::io(format!("listening on {bind} in {}", ns.name()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the listener non-blocking".to_string(), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || serve(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(EchoServer {
            addr: bind,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
