//! Test support (feature `testing`): [`EtcdServer`], a real etcd (Debian's
//! `etcd-server`, `/usr/bin/etcd`) on free loopback ports with a data
//! directory of its own, killed when dropped (also when the test panics).
//!
//! Ports are picked by binding `127.0.0.1:0` and releasing them, for the
//! client, peer and metrics URLs; readiness is `GET /health` on the metrics
//! URL (plain HTTP even when clients need TLS). [`EtcdServer::stop`] and
//! [`EtcdServer::restart`] keep the ports and the data, to test what clients
//! do across an etcd restart. [`EtcdServer::start_tls`] first makes a CA, a
//! server and a client certificate with the `openssl` CLI and requires
//! client certificates.
//!
//! The calls block (process spawns, polling); from async tests call them
//! on a multi-threaded runtime or inside `spawn_blocking`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::config::{DatastoreConfig, EtcdConfig};

/// The etcd binary, overridable with `ETCD_BIN`.
const ETCD: &str = "/usr/bin/etcd";
/// The etcdctl binary, overridable with `ETCDCTL_BIN`.
const ETCDCTL: &str = "/usr/bin/etcdctl";
/// How long etcd may take to serve after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when etcd exits at once (a port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// What failed while running a test etcd.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("etcd {endpoint}: {problem}; end of its log:\n{log}")]
    NotServing {
        endpoint: String,
        problem: String,
        log: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The certificates of a TLS test etcd, all PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
    metrics: u16,
}

impl Ports {
    /// Three distinct free loopback ports (held together, then released).
    fn pick() -> Result<Self, HarnessError> {
        let bind = || TcpListener::bind("127.0.0.1:0").map_err(io_error("binding 127.0.0.1:0"));
        let held = [bind()?, bind()?, bind()?];
        let port = |l: &TcpListener| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(io_error("reading a bound port"))
        };
        Ok(Self {
            client: port(&held[0])?,
            peer: port(&held[1])?,
            metrics: port(&held[2])?,
        })
    }
}

/// A running single-member etcd for one test.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    ports: Ports,
    tls: Option<TlsFiles>,
    /// Holds `data/`, `etcd.log` and `tls/`; removed on drop.
    dir: TempDir,
}

impl EtcdServer {
    /// Starts a plain-HTTP etcd and waits until it serves.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(false)
    }

    /// Starts an etcd that serves clients over TLS and requires a client
    /// certificate signed by its CA (made here with `openssl`).
    pub fn start_tls() -> Result<Self, HarnessError> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-test-")
            .tempdir()
            .map_err(io_error("creating the etcd directory"))?;
        let tls = if tls {
            Some(make_certificates(&dir.path().join("tls"))?)
        } else {
            None
        };
        let mut server = Self {
            child: None,
            ports: Ports::pick()?,
            tls,
            dir,
        };
        let mut attempt = 1;
        loop {
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) if attempt < START_ATTEMPTS && server.exited() => {
                    tracing::warn!(error = %e, "test etcd exited at start; retrying on other ports");
                    attempt += 1;
                    server.ports = Ports::pick()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The client URL, `http://127.0.0.1:<port>` or `https://...`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.ports.client)
    }

    /// How to reach it: the endpoint, and for TLS the CA and the client
    /// certificate.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            ca_cert_file: self.tls.as_ref().map(|t| t.ca.clone()),
            cert_file: self.tls.as_ref().map(|t| t.client_cert.clone()),
            key_file: self.tls.as_ref().map(|t| t.client_key.clone()),
            username: None,
            password: None,
        }
    }

    /// [`Self::config`] as a datastore configuration.
    pub fn datastore_config(&self) -> DatastoreConfig {
        DatastoreConfig::Etcd(self.config())
    }

    /// The certificates, for a TLS server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The data directory (kept across [`Self::stop`] and [`Self::restart`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills etcd (SIGKILL, as a crash) and waits for it; keeps the data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports with the same data directory and
    /// waits until it serves. Stops it first if it is running.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.spawn_and_wait()
    }

    /// Runs `etcdctl` (API v3) against this server with `args`, with the
    /// TLS flags when needed; returns its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, HarnessError> {
        let program = std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| ETCDCTL.into());
        let mut cmd = Command::new(&program);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()));
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cacert={}", tls.ca.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()));
        }
        cmd.args(args);
        let out = cmd.output().map_err(|source| HarnessError::Spawn {
            program: program.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                command: format!("etcdctl {}", args.join(" ")),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Whether the etcd process has ended (or was never started).
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let program = std::env::var("ETCD_BIN").unwrap_or_else(|_| ETCD.into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io_error(format!("opening {}", self.log_path().display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("duplicating the log file"))?;
        let Ports { peer, metrics, .. } = self.ports;
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(&program);
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            // One member: elect it fast, nobody to send heartbeats to.
            .args(["--heartbeat-interval=10", "--election-timeout=100"])
            .args(["--logger=zap", "--log-outputs=stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            program: program.clone(),
            source,
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            if self.exited() {
                return Err(self.not_serving("exited during start".into()));
            }
            if health(self.ports.metrics) {
                tracing::debug!(endpoint = %self.endpoint(), took = ?started.elapsed(), "test etcd ready");
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(self.not_serving(format!("not healthy within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn not_serving(&self, problem: String) -> HarnessError {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        HarnessError::NotServing {
            endpoint: self.endpoint(),
            problem,
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /health` on the metrics port answers `"health":"true"` (a leader,
/// no alarm, a read served).
fn health(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.contains("\"health\":\"true\"")
}

/// Makes a CA and, signed by it, a server certificate for 127.0.0.1 and
/// localhost and a client certificate (CN `root`), P-256 keys, in `dir`.
fn make_certificates(dir: &Path) -> Result<TlsFiles, HarnessError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    let path = |name: &str| dir.join(name);
    let s = |p: &Path| p.display().to_string();
    let files = TlsFiles {
        ca: path("ca.pem"),
        server_cert: path("server.pem"),
        server_key: path("server-key.pem"),
        client_cert: path("client.pem"),
        client_key: path("client-key.pem"),
    };
    let ca_key = path("ca-key.pem");
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &new_key,
            &["-keyout", &s(&ca_key), "-out", &s(&files.ca), "-days", "2"],
            &["-subj", "/CN=calico-rs test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    )?;
    let leaves = [
        (
            "server",
            &files.server_cert,
            &files.server_key,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
            "2",
        ),
        (
            "root",
            &files.client_cert,
            &files.client_key,
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
            "3",
        ),
    ];
    for (cn, cert, key, extensions, serial) in leaves {
        let csr = path(&format!("{cn}.csr"));
        let ext = path(&format!("{cn}.ext"));
        std::fs::write(&ext, extensions).map_err(io_error(format!("writing {}", ext.display())))?;
        openssl(
            &[
                &["req", "-new"][..],
                &new_key,
                &[
                    "-keyout",
                    &s(key),
                    "-out",
                    &s(&csr),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            ]
            .concat(),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&files.ca),
            "-CAkey",
            &s(&ca_key),
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            &s(&ext),
            "-out",
            &s(cert),
        ])?;
    }
    Ok(files)
}

fn openssl(args: &[&str]) -> Result<(), HarnessError> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|source| HarnessError::Spawn {
            program: "openssl".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Command {
            command: format!("openssl {}", args.join(" ")),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
