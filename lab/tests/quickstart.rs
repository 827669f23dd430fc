//! The README's quickstart end to end (root, BIRD 2): `scripts/quickstart.sh`
//! with the binaries this test built (`QUICKSTART_BIN`), under a lab name and
//! state root of its own, brings up `examples/lab/quickstart.clab.yml`, adds
//! two workloads per host through the CNI plugin and prints the reachability
//! matrix, which must follow the policy of `quickstart-resources.yaml` cell
//! by cell, and every host's BGP session to the ToR must be Established;
//! `--down` then leaves none of the lab's namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::cni::REFERENCE_PLUGINS;
use testkit::{require_programs, require_root};

/// The quickstart under a test's own name and state root; `--down` on drop.
struct Quickstart {
    name: String,
    bin: PathBuf,
    root: tempfile::TempDir,
}

impl Quickstart {
    fn new() -> Quickstart {
        let felix = testkit::workspace_binary("felix", "felix").unwrap();
        for (package, bin) in [
            ("calicoctl", "calicoctl"),
            ("cni", "calico"),
            ("cni", "calico-ipam"),
            ("lab", "calico-lab"),
        ] {
            testkit::workspace_binary(package, bin).unwrap();
        }
        Quickstart {
            name: format!("q{}", std::process::id()),
            bin: felix.parent().unwrap().to_path_buf(),
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, extra: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/quickstart.sh");
        Command::new(script)
            .args(["--name", &self.name])
            .args(extra)
            .env("QUICKSTART_BIN", &self.bin)
            .env("CALICO_LAB_STATE_DIR", self.root.path())
            .output()
            .unwrap()
    }

    /// The lab's namespaces (hosts, ToR, workloads) still present.
    fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| {
                ns.starts_with(&format!("clab-{}-", self.name))
                    || ns.starts_with(&format!("qs-{}-", self.name))
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        self.run(&["--down"]);
    }
}

/// The workload's `app` label: its name without the host suffix.
fn app(workload: &str) -> &str {
    workload.split('-').next().unwrap()
}

/// What the policy says of `src` pinging `dst`.
fn expected(src: &str, dst: &str) -> &'static str {
    let allowed = match app(dst) {
        "web" => app(src) == "client",
        "db" => app(src) == "web",
        _ => true,
    };
    if allowed { "ok" } else { "denied" }
}

#[test]
fn the_quickstart_routes_polices_reports_bgp_and_tears_down() {
    if !require_root()
        || !require_programs(&[
            "ip",
            "ping",
            "bird",
            "birdc",
            &format!("{REFERENCE_PLUGINS}/loopback"),
        ])
    {
        return;
    }
    let qs = Quickstart::new();
    let out = qs.run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = format!(
        "{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");

    // The matrix: a header of destinations, then one row per source.
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("== reachability"))
        .skip(1);
    let columns: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(columns.len(), 6, "{report}");
    let (mut allowed, mut denied) = (0, 0);
    for row in lines.by_ref().take(columns.len()) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let src = cells[0];
        for (dst, cell) in columns.iter().zip(&cells[1..]) {
            let want = if src == *dst { "-" } else { expected(src, dst) };
            assert_eq!(*cell, want, "{src} → {dst}\n{report}");
            match want {
                "ok" => allowed += 1,
                "denied" => denied += 1,
                _ => {}
            }
        }
    }
    assert_eq!((allowed, denied), (18, 12), "{report}");

    // Every host's status: the ToR, Established.
    for host in ["h1", "h2", "h3"] {
        let section: Vec<&str> = stdout
            .lines()
            .skip_while(|l| *l != format!("== {host}: calicoctl node status"))
            .skip(1)
            .take_while(|l| !l.starts_with("== ") && !l.starts_with("tear down"))
            .collect();
        assert!(
            section
                .iter()
                .any(|l| l.contains("10.0.0.1") && l.contains("Established")),
            "{host}: {section:?}\n{report}"
        );
    }

    // A second run refuses while the lab is up.
    let again = qs.run(&[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is up already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let down = qs.run(&["--down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(qs.namespaces(), Vec::<String>::new());
    assert!(!qs.root.path().join(&qs.name).exists());
}
