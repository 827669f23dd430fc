//! What the container-runtime harnesses ([`Podman`](crate::Podman),
//! [`Containerd`](crate::Containerd)) share: [`Containers`], probes run inside
//! a container by its runtime; [`busybox_rootfs`], the test containers' root
//! (Debian's static busybox, the applets the tests use, a page for
//! `httpd`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::Error;

/// Containers of one runtime, probed from inside: each runs busybox
/// `httpd` on the ports a test gives and the applets of [`busybox_rootfs`].
pub trait Containers {
    /// Runs `args` in container `name`; its standard output, trimmed.
    fn exec(&self, name: &str, args: &[&str]) -> Result<String, Error>;

    /// Whether container `from` fetches `http://addr:port/` within 2 s
    /// (busybox `nc` asks: the static busybox's `wget` crashes in a root
    /// without NSS libraries).
    fn fetches(&self, from: &str, addr: IpAddr, port: u16) -> bool {
        let ask = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {addr} {port}");
        self.exec(from, &["sh", "-c", &ask])
            .is_ok_and(|reply| reply.starts_with("HTTP/1.") && reply.contains(" 200 "))
    }

    /// Whether one ping from container `from` to `addr` is answered within 2 s.
    fn pings(&self, from: &str, addr: IpAddr) -> bool {
        self.exec(from, &["ping", "-c", "1", "-W", "2", &addr.to_string()])
            .is_ok()
    }
}

/// The busybox applets a test container uses.
const APPLETS: &[&str] = &["sh", "httpd", "printf", "ping", "nc", "sleep", "cat", "ip"];

/// A root file system of busybox (Debian's `busybox-static`) in `dir`: its
/// applets a test uses, and `/www/index.html` for `httpd -h /www`.
pub fn busybox_rootfs(dir: &Path) -> Result<PathBuf, Error> {
    let busybox = crate::require::find_program("busybox")
        .ok_or_else(|| Error::io("busybox is not on PATH", std::io::ErrorKind::NotFound))?;
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "www"] {
        create_dir(&dir.join(sub))?;
    }
    std::fs::copy(&busybox, dir.join("bin/busybox")).map_err(|e| {
        Error::io(
            format!("copying {} into {}", busybox.display(), dir.display()),
            e,
        )
    })?;
    for applet in APPLETS {
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)
                .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
        }
    }
    write(&dir.join("www/index.html"), "hello\n")?;
    Ok(dir.to_path_buf())
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
