//! The Debian package (`packaging/deb/`, built by `scripts/package.sh` from
//! this test's binaries, stripped there), tried as a sysadmin would:
//!
//! - its contents (no root): the files and their modes, owned by root;
//!   the conffiles; stripped binaries whose debug information is in
//!   calico-rs-dbgsym under their build IDs; the dependencies;
//! - in a clean Debian 12 root (debootstrap, with systemd installed but, as
//!   on this machine, not running; root, Debian's mirror): `apt-get install`
//!   enables and starts nothing and the unit passes `systemd-analyze
//!   verify`; felix runs from the unit's `ExecStart` line with the unit's
//!   capabilities, a workload made through the installed conflist serves a
//!   TCP connection from outside; upgrading to version B with apt while
//!   felix runs, then restarting felix as systemd would (SIGTERM, then the
//!   new binary), keeps that connection, every route and the nftables
//!   ruleset, the datastore and the administrator's configuration;
//!   removal leaves the configuration and the datastore; purge the
//!   datastore only;
//! - the same root booted with systemd as PID 1 in a podman container
//!   (sharing the test's host namespace): installing starts nothing, the
//!   unit runs felix inside its sandbox (capabilities, no new privileges,
//!   seccomp), and the upgrade's postinst restarts it through systemd
//!   without dropping the connection; removal stops it.

mod deb;

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use deb::{
    BINARIES, CONFFILES, DATASTORE_DIR, ENABLED_LINK, Flow, Machine, POOL_YAML, UNIT, Workload,
    base, bgp_listens, conntrack_entries, felix_ready, packages, proc_status, version,
};
use testkit::{Background, poll_until, require_programs, require_root, run_checked};

fn stdout(cmd: &mut Command) -> String {
    let out = run_checked(cmd).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    stdout(Command::new("dpkg-deb").args(args).arg(deb))
}

/// A control field of a package.
fn field(deb: &Path, name: &str) -> String {
    stdout(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_owned()
}

/// The section names of an ELF file.
fn sections(file: &Path) -> Vec<String> {
    stdout(Command::new("readelf").arg("-SW").arg(file))
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix('[')?.split_once(']')?.1;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .filter(|name| name.starts_with('.'))
        .collect()
}

fn build_id(file: &Path) -> String {
    stdout(Command::new("readelf").arg("-n").arg(file))
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("{} has no build ID", file.display()))
}

#[test]
fn the_package_holds_stripped_binaries_conffiles_the_unit_and_its_scripts() {
    if !require_programs(&["dpkg-deb", "dpkg-shlibdeps", "readelf", "objcopy", "sh"]) {
        return;
    }
    let p = packages();
    assert_eq!(field(&p.a, "Package"), "calico-rs");
    assert_eq!(field(&p.a, "Version"), version('a'));
    let depends = field(&p.a, "Depends");
    let names: Vec<&str> = depends
        .split(", ")
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    for dep in ["libc6", "libnftnl11", "nftables", "conntrack"] {
        assert!(names.contains(&dep), "Depends lacks {dep}: {depends}");
    }
    assert_eq!(
        field(&p.a, "Recommends"),
        "containernetworking-plugins",
        "loopback and portmap, which the conflist chains"
    );

    // Every file, its mode, owned by root; the man pages are calicoctl's.
    let listing = dpkg_deb(&["--contents"], &p.a);
    let mut files = std::collections::BTreeMap::new();
    let mut dirs = Vec::new();
    for line in listing.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (mode, owner, path) = (parts[0], parts[1], parts[5]);
        assert_eq!(owner, "root/root", "{line}");
        assert_eq!(parts.len(), 6, "no links or odd names: {line}");
        match mode.chars().next() {
            Some('d') => {
                assert_eq!(mode, "drwxr-xr-x", "{line}");
                dirs.push(path.to_owned());
            }
            Some('-') => {
                files.insert(path.to_owned(), mode.to_owned());
            }
            _ => panic!("unexpected entry: {line}"),
        }
    }
    let man: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("./usr/share/man/man1/"))
        .cloned()
        .collect();
    assert!(man.contains(&"./usr/share/man/man1/calicoctl.1.gz".to_owned()));
    for page in &man {
        assert!(
            page.contains("/calicoctl") && page.ends_with(".1.gz"),
            "{page}"
        );
        assert_eq!(files.remove(page).as_deref(), Some("-rw-r--r--"), "{page}");
    }
    let exec = "-rwxr-xr-x";
    let data = "-rw-r--r--";
    let mut expected: std::collections::BTreeMap<String, String> = BINARIES
        .iter()
        .map(|(_, _, path)| (format!(".{path}"), exec.to_owned()))
        .collect();
    for path in CONFFILES.iter().copied().chain([
        UNIT,
        "/usr/share/doc/calico-rs/README.Debian",
        "/usr/share/doc/calico-rs/copyright",
        "/usr/share/bash-completion/completions/calicoctl",
        "/usr/share/zsh/vendor-completions/_calicoctl",
        "/usr/share/fish/vendor_completions.d/calicoctl.fish",
    ]) {
        expected.insert(format!(".{path}"), data.to_owned());
    }
    assert_eq!(files, expected, "the package's files and modes");
    assert!(dirs.contains(&format!(".{DATASTORE_DIR}/")), "{dirs:?}");

    // The conffiles, and the maintainer scripts: executable, valid sh.
    let listed = stdout(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&p.a)
            .arg("conffiles"),
    );
    assert_eq!(listed.lines().collect::<Vec<_>>(), CONFFILES);
    let tmp = tempfile::tempdir().unwrap();
    let control = tmp.path().join("control");
    run_checked(Command::new("dpkg-deb").arg("-e").arg(&p.a).arg(&control)).unwrap();
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755, "{script}");
        run_checked(Command::new("sh").arg("-n").arg(&path)).unwrap();
    }

    // Stripped binaries; each one's debug information (with its symbols)
    // in the dbgsym package at /usr/lib/debug/.build-id/NN/REST.debug,
    // named by its .gnu_debuglink. They still run.
    let tree = tmp.path().join("tree");
    let dbg = tmp.path().join("dbgsym");
    run_checked(Command::new("dpkg-deb").arg("-x").arg(&p.a).arg(&tree)).unwrap();
    run_checked(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&p.a_dbgsym)
            .arg(&dbg),
    )
    .unwrap();
    let mut ids = Vec::new();
    for (_, name, path) in BINARIES {
        let bin = tree.join(path.trim_start_matches('/'));
        let s = sections(&bin);
        // (.debug_gdb_scripts is loaded with the program: rustc's note to
        // gdb where its pretty-printers are, a few bytes, not DWARF.)
        assert!(
            !s.iter()
                .any(|s| s == ".symtab" || (s.starts_with(".debug_") && s != ".debug_gdb_scripts")),
            "{name} is not stripped: {s:?}"
        );
        assert!(s.contains(&".gnu_debuglink".to_owned()), "{name}: {s:?}");
        let id = build_id(&bin);
        let debug = dbg.join(format!(
            "usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        ));
        let d = sections(&debug);
        for needed in [".debug_info", ".debug_line", ".symtab"] {
            assert!(d.contains(&needed.to_owned()), "{}: {d:?}", debug.display());
        }
        assert_eq!(build_id(&debug), id);
        let link = stdout(
            Command::new("readelf")
                .args(["--string-dump=.gnu_debuglink"])
                .arg(&bin),
        );
        assert!(link.contains(&format!("{}.debug", &id[2..])), "{link}");
        ids.push(id);
    }
    let version_line = stdout(Command::new(tree.join("usr/bin/felix")).arg("--version"));
    assert_eq!(
        version_line.trim(),
        format!("felix {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(field(&p.a_dbgsym, "Package"), "calico-rs-dbgsym");
    assert_eq!(
        field(&p.a_dbgsym, "Depends"),
        format!("calico-rs (= {})", version('a'))
    );
    let mut listed: Vec<String> = field(&p.a_dbgsym, "Build-Ids")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
}

/// Root, debootstrap and the commands the root tests run on the host.
fn can_run_in_a_root(extra: &[&str]) -> bool {
    require_root()
        && require_programs(
            &[
                &[
                    "debootstrap",
                    "chroot",
                    "nsenter",
                    "mount",
                    "umount",
                    "ip",
                    "nft",
                    "sha256sum",
                    "systemd-analyze",
                    "dpkg-deb",
                ][..],
                extra,
            ]
            .concat(),
        )
}

/// Felix from the installed unit's `ExecStart` line, inside the machine's
/// host namespace and root, with exactly the unit's capabilities (and no
/// new privileges): what systemd would start, without systemd.
fn start_felix(m: &Machine, log: &Path) -> Background {
    let unit = m.unit();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = m.root.cmd_in(&m.host, "/usr/bin/setpriv");
    cmd.args(unit.setpriv_args())
        .args(&unit.exec_start)
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let mut felix = Background::spawn(&mut cmd).unwrap();
    let logs = || std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        poll_until(Duration::from_secs(60), Duration::from_millis(100), || {
            assert!(
                felix.try_wait().unwrap().is_none(),
                "felix exited:\n{}",
                logs()
            );
            felix_ready(&m.host)
        }),
        "felix not ready within 60 s:\n{}",
        logs()
    );
    // It runs with the unit's capabilities and nothing else.
    let pid = felix.id();
    assert_eq!(
        proc_status(pid, "CapEff"),
        format!("{:016x}", unit.capability_mask())
    );
    assert_eq!(
        proc_status(pid, "CapBnd"),
        format!("{:016x}", unit.capability_mask())
    );
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            bgp_listens(&m.host)
        }),
        "felix's BGP speaker listens on port 179:\n{}",
        logs()
    );
    felix
}

/// Polls until the dataplane reads the same twice 1 s apart, with no IPv6
/// address still in duplicate address detection (the kernel adds a veth's
/// link-local address, and its local route, only after it); that reading.
fn settled_dataplane(m: &Machine) -> String {
    assert!(
        poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            m.host
                .ip(["-6", "addr", "show", "tentative"])
                .unwrap()
                .is_empty()
        }),
        "IPv6 addresses still tentative: {}",
        m.host.ip(["-6", "addr", "show", "tentative"]).unwrap()
    );
    let mut last = m.dataplane();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        let now = m.dataplane();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the dataplane kept changing:\n{last}");
}

/// The datastore as calicoctl reads it through the installed calicoctl.cfg.
fn resources(m: &Machine) -> String {
    ["ippools", "nodes", "workloadendpoints", "profiles"]
        .iter()
        .map(|kind| m.run("calicoctl", &["get", kind, "-A", "-o", "yaml"]))
        .collect()
}

fn dpkg_status(m: &Machine) -> String {
    m.root
        .stdout(
            "dpkg-query",
            &["-W", "-f=${db:Status-Abbrev} ${Version}", "calico-rs"],
        )
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn installed_felix_keeps_a_flow_across_an_upgrade_and_removal_keeps_the_datastore() {
    if !can_run_in_a_root(&["setpriv"]) {
        return;
    }
    let p = packages();
    let m = Machine::new(base());
    m.root.bind_netns().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("felix.log");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    // Install: apt resolves the dependencies from Debian's mirror.
    let a = m.copy_in(&p.a);
    m.run("apt-get", &["install", "-y", "-q", &a]);
    assert_eq!(dpkg_status(&m), format!("ii  {}", version('a')));
    for (_, name, path) in BINARIES {
        let meta = std::fs::metadata(m.root.file(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        assert_eq!(mode & 0o7777, 0o755, "{name}");
    }
    let conffiles = m.run("dpkg-query", &["-W", "-f=${Conffiles}", "calico-rs"]);
    for conffile in CONFFILES {
        assert!(m.root.file(conffile).is_file(), "{conffile}");
        assert!(conffiles.contains(conffile), "{conffiles}");
    }
    // Nothing enabled, nothing started, no datastore yet.
    assert!(!m.has(ENABLED_LINK));
    let enabled = m
        .root
        .cmd("systemctl")
        .args(["is-enabled", "calico-felix.service"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled");
    assert!(m.root.processes().is_empty(), "{:?}", m.root.processes());
    assert_eq!(
        std::fs::read_dir(m.root.file(DATASTORE_DIR))
            .unwrap()
            .count(),
        0
    );
    // The unit as systemd reads it (the root's units, its felix).
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", m.root.path().display()))
        .arg("calico-felix.service")
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // The shipped calicoctl.cfg is read: the embedded store.
    let version_out = m.run("calicoctl", &["version"]);
    assert!(
        version_out.contains("sqlite") && version_out.contains("/var/lib/calico/calico.db"),
        "{version_out}"
    );

    // Configure (an IP pool), start felix as the unit does, add a workload
    // through the shipped conflist, and open a connection from outside.
    std::fs::write(m.root.file("/root/pool.yaml"), POOL_YAML).unwrap();
    m.run("calicoctl", &["apply", "-f", "/root/pool.yaml"]);
    let felix = start_felix(&m, &log);
    let workload = Workload::add(&m, "pkg-a");
    let mut flow = Flow::open(&m.outside, workload.addr(), &logs);
    flow.check("before the upgrade", &logs);
    let dataplane = settled_dataplane(&m);
    assert!(
        dataplane.contains(&format!("{} dev cali", workload.ip))
            && dataplane.contains("table inet calico"),
        "felix programmed the workload:\n{dataplane}"
    );
    let datastore = resources(&m);
    // The administrator enables the unit and edits a conffile.
    m.run("systemctl", &["enable", "calico-felix.service"]);
    assert!(m.has(ENABLED_LINK));
    let felix_yaml = m.root.file("/etc/calico/felix.yaml");
    let edited = std::fs::read_to_string(&felix_yaml).unwrap() + "# edited by the administrator\n";
    std::fs::write(&felix_yaml, &edited).unwrap();

    // Upgrade with apt while felix runs: dpkg replaces the binary under it.
    let b = m.copy_in(&p.b);
    m.run("apt-get", &["install", "-y", "-q", &b]);
    assert_eq!(dpkg_status(&m), format!("ii  {}", version('b')));
    let old_exe = std::fs::read_link(format!("/proc/{}/exe", felix.id())).unwrap();
    assert!(
        old_exe.to_string_lossy().ends_with(" (deleted)"),
        "the running felix is the replaced file: {}",
        old_exe.display()
    );
    flow.check("during the upgrade", &logs);
    // Restart as systemd's try-restart would: SIGTERM, then ExecStart again.
    let status = felix.stop(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "felix stops cleanly on SIGTERM: {status}\n{}",
        logs()
    );
    flow.check("while felix is down", &logs);
    let felix = start_felix(&m, &log);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", felix.id())).unwrap(),
        m.root.file("/usr/bin/felix"),
        "the new felix runs the new file"
    );
    flow.holds("after the upgrade", &logs);
    assert_eq!(
        settled_dataplane(&m),
        dataplane,
        "the dataplane after the upgrade"
    );
    assert_eq!(resources(&m), datastore, "the datastore after the upgrade");
    assert_eq!(std::fs::read_to_string(&felix_yaml).unwrap(), edited);
    assert!(m.has(ENABLED_LINK), "still enabled");

    // Remove (felix stopped first, as prerm has systemd do): the programs
    // and the unit go; the configuration and the datastore stay.
    felix.stop(Duration::from_secs(10)).unwrap();
    drop(workload);
    let store = m.datastore_files();
    assert!(store.contains("calico.db"), "{store}");
    m.run("apt-get", &["remove", "-y", "-q", "calico-rs"]);
    assert_eq!(dpkg_status(&m), format!("rc  {}", version('b')));
    for (_, name, path) in BINARIES {
        assert!(!m.has(path), "{name} removed");
    }
    assert!(!m.has(UNIT));
    for conffile in CONFFILES {
        assert!(m.root.file(conffile).is_file(), "{conffile} kept");
    }
    assert_eq!(m.datastore_files(), store, "the datastore after removal");

    // Purge: the configuration goes, the datastore stays.
    m.run("apt-get", &["purge", "-y", "-q", "calico-rs"]);
    assert_eq!(dpkg_status(&m), "", "nothing of calico-rs is known to dpkg");
    for gone in CONFFILES
        .iter()
        .copied()
        .chain(["/etc/calico", ENABLED_LINK])
    {
        assert!(!m.has(gone), "{gone} purged");
    }
    assert_eq!(m.datastore_files(), store, "the datastore after purge");
}

/// A container running systemd as PID 1 on the machine's root, in its host
/// namespace; removed (with its processes) on drop.
struct Systemd {
    name: String,
}

impl Systemd {
    fn boot(m: &Machine) -> Systemd {
        remove_stale_containers();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pkgsd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // runc refuses podman's default limits, which are above the test's own.
        let (soft, hard) = limit("Max open files");
        let nproc = limit("Max processes").1.min(4096);
        // From here on, dropping `sd` removes whatever podman made.
        let sd = Systemd { name };
        run_checked(
            Command::new("podman")
                .args([
                    "run",
                    "-d",
                    "--name",
                    &sd.name,
                    "--privileged",
                    "--systemd=always",
                ])
                .arg(format!("--network=ns:{}", m.host.path().display()))
                .arg(format!("--ulimit=nofile={soft}:{hard}"))
                .arg(format!("--ulimit=nproc={nproc}:{nproc}"))
                .arg("--rootfs")
                .arg(m.root.path())
                .arg("/lib/systemd/systemd"),
        )
        .unwrap_or_else(|e| panic!("booting systemd in a container: {e}"));
        let booted = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
            let state = sd.output(&["systemctl", "is-system-running"]);
            matches!(state.trim(), "running" | "degraded")
        });
        assert!(
            booted,
            "systemd did not boot: {}",
            sd.output(&["systemctl", "--failed"])
        );
        sd
    }

    fn exec_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(["exec", &self.name]).args(args);
        cmd
    }

    /// Runs `args` in the container; its stdout, panicking on failure.
    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        stdout(&mut self.exec_cmd(args))
    }

    /// Runs `args` in the container; its stdout whatever the exit status.
    fn output(&self, args: &[&str]) -> String {
        self.exec_cmd(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// A property of calico-felix.service.
    fn felix(&self, property: &str) -> String {
        self.run(&[
            "systemctl",
            "show",
            "--value",
            "-p",
            property,
            "calico-felix.service",
        ])
        .trim()
        .to_owned()
    }

    fn journal(&self) -> String {
        self.output(&["journalctl", "--no-pager", "-u", "calico-felix.service"])
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "2", &self.name])
            .output();
    }
}

/// A resource limit of this process (soft, hard), from `/proc/self/limits`.
fn limit(name: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/self/limits"));
    let mut values = line[name.len()..]
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    let soft = values.next().expect("a soft limit");
    (soft, values.next().expect("a hard limit"))
}

/// Removes containers of earlier test processes that are gone.
fn remove_stale_containers() {
    let Ok(out) = Command::new("podman")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
    else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let pid = name
            .strip_prefix("pkgsd-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = Command::new("podman").args(["rm", "-f", name]).output();
        }
    }
}

#[test]
fn under_systemd_install_starts_nothing_and_an_upgrade_restarts_felix_hitlessly() {
    if !can_run_in_a_root(&["podman", "runc"]) {
        return;
    }
    let p = packages();
    let m = Machine::new(base());
    let a = m.copy_in(&p.a);
    let b = m.copy_in(&p.b);
    // The container's network is the test's namespace, without Debian's
    // mirror: apt fetches what the package needs beforehand, installs it
    // from its cache in the container, and dpkg installs the package there.
    m.run("apt-get", &["install", "-y", "-q", "--download-only", &a]);
    let sd = Systemd::boot(&m);
    // Only now: the container's /run starts as a copy of the root's, and
    // namespace files cannot be copied.
    m.root.bind_netns().unwrap();
    let mut needs = vec!["install", "-y", "-q", "--no-download"];
    let fields = format!("{}, {}", field(&p.a, "Depends"), field(&p.a, "Recommends"));
    needs.extend(
        fields
            .split(", ")
            .filter_map(|d| d.split_whitespace().next()),
    );
    let apt: Vec<&str> = std::iter::once("apt-get").chain(needs).collect();
    sd.run(&apt);
    sd.run(&["dpkg", "-i", &a]);
    assert_eq!(
        sd.felix("ActiveState"),
        "inactive",
        "installing starts nothing"
    );
    assert_eq!(sd.felix("UnitFileState"), "disabled", "nor enables it");
    assert!(!felix_ready(&m.host));

    // Configure as README.Debian says: a node name (felix.yaml and the
    // CNI plugin's nodename file); enable and start; a pool.
    let felix_yaml = m.root.file("/etc/calico/felix.yaml");
    let text = std::fs::read_to_string(&felix_yaml).unwrap();
    assert!(text.contains("\n#nodeName: host-1\n"), "{text}");
    std::fs::write(
        &felix_yaml,
        text.replace("\n#nodeName: host-1\n", "\nnodeName: pkg-node\n"),
    )
    .unwrap();
    std::fs::write(m.root.file("/var/lib/calico/nodename"), "pkg-node\n").unwrap();
    sd.run(&["systemctl", "enable", "--now", "calico-felix.service"]);
    let logs = || sd.journal();
    assert!(
        poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
            felix_ready(&m.host)
        }),
        "felix not ready under systemd:\n{}",
        logs()
    );
    // Felix made the datastore, inside its sandbox; the pool comes after.
    assert!(m.root.file("/var/lib/calico/calico.db").is_file());
    std::fs::write(m.root.file("/root/pool.yaml"), POOL_YAML).unwrap();
    sd.run(&["calicoctl", "apply", "-f", "/root/pool.yaml"]);
    let pid = sd.felix("MainPID");
    let status = sd.run(&["cat", &format!("/proc/{pid}/status")]);
    let unit = m.unit();
    for (field, value) in [
        ("CapEff", format!("{:016x}", unit.capability_mask())),
        ("NoNewPrivs", "1".to_owned()),
        ("Seccomp", "2".to_owned()),
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.strip_prefix(&format!("{field}:")).map(str::trim) == Some(&value)),
            "{field} {value}:\n{status}"
        );
    }
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            bgp_listens(&m.host)
        }),
        "felix's BGP speaker listens on port 179:\n{}",
        logs()
    );
    let workload = Workload::add(&m, "pkg-sd");
    let mut flow = Flow::open(&m.outside, workload.addr(), &logs);
    flow.check("before the upgrade", &logs);
    let dataplane = settled_dataplane(&m);
    assert!(
        dataplane.contains(&format!("{} dev cali", workload.ip)),
        "{dataplane}"
    );

    // Upgrade: the postinst has systemd restart felix on the new binary.
    let started = sd.felix("ExecMainStartTimestampMonotonic");
    sd.run(&["dpkg", "-i", &b]);
    assert_eq!(
        sd.run(&["dpkg-query", "-W", "-f=${Version}", "calico-rs"]),
        version('b')
    );
    assert_eq!(sd.felix("ActiveState"), "active", "{}", logs());
    assert_ne!(
        sd.felix("ExecMainStartTimestampMonotonic"),
        started,
        "restarted"
    );
    assert_ne!(sd.felix("MainPID"), pid);
    assert!(
        poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
            felix_ready(&m.host)
        }),
        "the new felix not ready:\n{}",
        logs()
    );
    flow.holds("after the upgrade", &logs);
    assert_eq!(
        settled_dataplane(&m),
        dataplane,
        "the dataplane after the upgrade"
    );

    // A workload that goes takes its flows with it: felix runs conntrack
    // inside its sandbox.
    let gone = Workload::add(&m, "pkg-gone");
    let mut gone_flow = Flow::open(&m.outside, gone.addr(), &logs);
    gone_flow.check("to a workload about to go", &logs);
    let gone_ip = gone.ip;
    assert!(!conntrack_entries(&m.host, gone_ip).is_empty());
    gone.delete(&m);
    assert!(
        poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            conntrack_entries(&m.host, gone_ip).is_empty()
                && !m.dataplane().contains(&format!("{gone_ip} dev cali"))
        }),
        "felix removed the route and the flows of {gone_ip}: {}\n{}",
        conntrack_entries(&m.host, gone_ip),
        logs()
    );
    drop(gone_flow);
    flow.check("after another workload went", &logs);

    // Removal stops felix (its routes and rules stay, and so the flow) and
    // keeps the datastore; purge removes the configuration and the link.
    sd.run(&["dpkg", "-r", "calico-rs"]);
    assert_eq!(sd.felix("ActiveState"), "inactive");
    assert!(!felix_ready(&m.host));
    flow.check("after removal", &logs);
    assert!(m.root.file("/var/lib/calico/calico.db").is_file());
    sd.run(&["dpkg", "--purge", "calico-rs"]);
    for gone in CONFFILES.iter().copied().chain([ENABLED_LINK]) {
        assert!(!m.has(gone), "{gone} purged");
    }
    assert!(m.root.file("/var/lib/calico/calico.db").is_file());
    drop(flow);
    drop(workload);
}
