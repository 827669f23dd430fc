//! Route filters, communities and ROUTE-REFRESH against BIRD 2 (root,
//! `bird` and `birdc`): the `bgpd` daemon in one namespace with import and
//! export filters in its YAML, BIRD in another. Assertions read BIRD's
//! view (`birdc show route all`, `show protocols all`), our kernel table
//! and `bgpd status`, never logs.

use std::path::Path;
use std::process::Command;

use testkit::{require_programs, require_root};

mod common;
use common::{Daemon, linked_pair, run, start_bird, wait_for};

const OURS: &str = "10.97.0.1";
const BIRDS: &str = "10.97.0.2";

/// BIRD (AS 65002) with four static routes: 10.61.0.0/16 and
/// 10.63.0.0/24 plain, 10.61.1.0/24 (inside 10.61.0.0/16), and
/// 10.62.0.0/24 exported with community (65002,666).
fn bird_conf(dir: &Path) -> std::path::PathBuf {
    let conf = format!(
        "router id {BIRDS};
protocol device {{ }}
protocol static static1 {{
  ipv4;
  route 10.61.0.0/16 blackhole;
  route 10.61.1.0/24 blackhole;
  route 10.62.0.0/24 blackhole;
  route 10.63.0.0/24 blackhole;
}}
protocol bgp peer1 {{
  local {BIRDS} as 65002;
  neighbor {OURS} as 65001;
  connect delay time 1;
  ipv4 {{
    import all;
    export filter {{ if net = 10.62.0.0/24 then bgp_community.add((65002,666)); accept; }};
  }};
}}
"
    );
    let path = dir.join("bird.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// Our daemon: announces 10.44.0.0/24 and 10.45.0.0/24, exports only
/// 10.44.0.0/24 unless `export_all`, tags exports with communities, and
/// imports neither 10.61.0.0/16's more-specifics nor, unless
/// `import_666`, routes with community 65002:666.
fn bgpd_yaml(dir: &Path, export_all: bool, import_666: bool) -> String {
    let export = if export_all {
        String::new()
    } else {
        "    export:\n      rules:\n        - { match: { prefix: 10.45.0.0/24 }, action: reject }\n"
            .to_owned()
    };
    let community_rule = if import_666 {
        ""
    } else {
        "        - { match: { community_any: [\"65002:666\"] }, action: reject }\n"
    };
    format!(
        "router_id: {OURS}
asn: 65001
listen: {OURS}
{}peers:
  - address: {BIRDS}
    asn: 65002
    local_address: {OURS}
    communities: [65001:100, no-export]
    large_communities: [65001:1:2]
    import:
      rules:
        - {{ match: {{ prefix: 10.61.0.0/16, ge: 24, le: 32 }}, action: reject }}
{community_rule}{export}announce: [10.44.0.0/24, 10.45.0.0/24]
kernel: {{ table: 100, protocol: 201 }}
",
        Daemon::status_line(dir)
    )
}

/// BIRD's count of route updates it has sent us ("Export updates",
/// column "accepted" of `show protocols all`).
fn bird_export_updates(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.trim_start().starts_with("Export updates:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[test]
fn filters_communities_and_route_refresh_work_with_bird() {
    if !require_root() || !require_programs(&["bird", "birdc"]) {
        return;
    }
    let (ns_us, ns_bird) = linked_pair(&[&format!("{OURS}/24")], &[&format!("{BIRDS}/24")]);
    let dir = tempfile::tempdir().unwrap();
    let bird_sock = dir.path().join("bird.ctl");
    let _bird = start_bird(&ns_bird, &bird_conf(dir.path()), &bird_sock);
    let bgpd = Daemon::start(&ns_us, dir.path(), &bgpd_yaml(dir.path(), false, false));
    let logs = [bgpd.log.as_path()];
    let birdc = |args: &[&str]| run(Command::new("birdc").arg("-s").arg(&bird_sock).args(args));
    let our_table = || {
        ns_us
            .table_routes(["route", "show", "table", "100", "proto", "201"])
            .unwrap()
    };
    let peer_counts = || bgpd.peer_fields(BIRDS).get(4..7).map(<[String]>::to_vec);

    // Export: 10.44.0.0/24 with our communities, 10.45.0.0/24 held back.
    wait_for(
        "BIRD to learn 10.44.0.0/24 with our communities",
        &logs,
        || {
            let out = birdc(&["show", "route", "10.44.0.0/24", "all"]);
            out.contains("BGP.community: (65001,100) (65535,65281)")
                && out.contains("BGP.large_community: (65001, 1, 2)")
        },
    );
    // Import: the /24 inside 10.61.0.0/16 and the 65002:666 route are
    // received, not accepted, and stay out of the kernel.
    wait_for("our kernel to get BIRD's accepted routes", &logs, || {
        let t = our_table();
        t.contains(&format!("10.61.0.0/16 via {BIRDS}"))
            && t.contains(&format!("10.63.0.0/24 via {BIRDS}"))
    });
    wait_for("bgpd status to count 4 received, 2 accepted", &logs, || {
        peer_counts() == Some(vec!["4".into(), "2".into(), "1".into()])
    });
    let t = our_table();
    assert!(
        !t.contains("10.61.1.0/24") && !t.contains("10.62.0.0/24"),
        "{t}"
    );
    assert!(!birdc(&["show", "route", "10.45.0.0/24"]).contains("10.45.0.0/24"));
    let status = bgpd.status();
    assert!(
        !status.contains("10.61.1.0/24") && !status.contains("10.62.0.0/24"),
        "{status}"
    );

    // New filters on SIGHUP: the community rule and the export rule go.
    // The Adj-RIB-In is filtered again (no ROUTE-REFRESH), and BIRD gets
    // 10.45.0.0/24.
    let refreshed_before =
        bird_export_updates(&birdc(&["show", "protocols", "all", "peer1"])).unwrap();
    std::fs::write(
        dir.path().join("bgpd.yaml"),
        bgpd_yaml(dir.path(), true, true),
    )
    .unwrap();
    run(Command::new("kill").args(["-HUP", &bgpd.process.id().to_string()]));
    wait_for(
        "10.62.0.0/24 to enter our kernel after the reload",
        &logs,
        || our_table().contains(&format!("10.62.0.0/24 via {BIRDS}")),
    );
    wait_for("BIRD to learn 10.45.0.0/24 after the reload", &logs, || {
        birdc(&["show", "route", "10.45.0.0/24", "all"]).contains("BGP.community: (65001,100)")
    });
    wait_for(
        "bgpd status to count 3 accepted, 2 advertised",
        &logs,
        || peer_counts() == Some(vec!["4".into(), "3".into(), "2".into()]),
    );
    assert!(!our_table().contains("10.61.1.0/24"));
    assert_eq!(
        bird_export_updates(&birdc(&["show", "protocols", "all", "peer1"])),
        Some(refreshed_before),
        "the reload made BIRD send nothing again"
    );

    // ROUTE-REFRESH on demand: BIRD sends its four routes again.
    let out = run(Command::new(env!("CARGO_BIN_EXE_bgpd"))
        .arg("refresh")
        .arg(&bgpd.status_socket)
        .arg(BIRDS));
    assert_eq!(
        out,
        format!("ROUTE-REFRESH sent to {BIRDS} for ipv4-unicast\n")
    );
    wait_for("BIRD to send its table again", &logs, || {
        bird_export_updates(&birdc(&["show", "protocols", "all", "peer1"]))
            .is_some_and(|n| n >= refreshed_before + 4)
    });
    assert_eq!(
        peer_counts(),
        Some(vec!["4".into(), "3".into(), "2".into()])
    );
    let unknown = run(Command::new(env!("CARGO_BIN_EXE_bgpd"))
        .arg("refresh")
        .arg(&bgpd.status_socket)
        .arg("10.97.0.9"));
    assert!(
        unknown.contains("10.97.0.9 is not a configured peer"),
        "{unknown}"
    );
}
