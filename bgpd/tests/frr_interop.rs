//! Interop with FRR (root, Debian `frr`: `/usr/lib/frr/zebra`,
//! `/usr/lib/frr/bgpd`, `vtysh`): the `bgpd` daemon in one network
//! namespace, FRR's zebra and bgpd in another, joined by a veth, with an
//! eBGP session over IPv4 (IPv4 unicast) and one over IPv6 (IPv6 unicast).
//! FRR runs with every path of its own (config, pid files, zserv and vty
//! sockets) in a temporary directory, and with `hostname` set, so it sends
//! the FQDN capability (its default). Assertions read FRR through
//! `vtysh --vty_socket`, both kernels through `ip route`, and bgpd through
//! `bgpd status`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::{Background, Netns, require_programs, require_root};

mod common;
use common::{Daemon, linked_pair, run, wait_for};

const ZEBRA: &str = "/usr/lib/frr/zebra";
const FRR_BGPD: &str = "/usr/lib/frr/bgpd";

const OURS4: &str = "10.96.0.1";
const THEIRS4: &str = "10.96.0.2";
const OURS6: &str = "fd00:96::1";
const THEIRS6: &str = "fd00:96::2";

fn frr_conf() -> String {
    format!(
        "hostname frr-peer
!
router bgp 65004
 bgp router-id {THEIRS4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {OURS4} remote-as 65001
 neighbor {OURS4} timers connect 1
 neighbor {OURS6} remote-as 65001
 neighbor {OURS6} timers connect 1
 address-family ipv4 unicast
  network 10.59.0.0/24
  no neighbor {OURS6} activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:59::/48
  neighbor {OURS6} activate
 exit-address-family
!
"
    )
}

/// FRR's zebra and bgpd in `ns`, everything under `dir` (owned by `frr`),
/// with no TCP vty (`-P 0`).
fn start_frr(ns: &Netns, dir: &Path) -> (Background, Background) {
    let zserv = dir.join("zserv.api");
    let daemon = |program: &str, name: &str, conf: &str| {
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = ns.cmd(program);
        cmd.arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join(format!("{name}.pid")))
            .arg("-z")
            .arg(&zserv)
            .arg("--vty_socket")
            .arg(dir)
            // As `frr`: FRR wants its user in the vty group, root is not.
            .args(["-u", "frr", "-g", "frr", "-P", "0", "--log"])
            .arg(format!(
                "file:{}",
                dir.join(format!("{name}.log")).display()
            ))
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap());
        Background::spawn(&mut cmd).unwrap()
    };
    let zebra = daemon(ZEBRA, "zebra", "hostname frr-peer\n");
    assert!(
        testkit::poll_until(Duration::from_secs(10), Duration::from_millis(50), || zserv
            .exists()),
        "zebra did not create {}",
        zserv.display()
    );
    let bgpd = daemon(FRR_BGPD, "bgpd", &frr_conf());
    (zebra, bgpd)
}

#[test]
fn ebgp_ipv4_and_ipv6_with_frr_exchange_routes_and_answer_route_refresh() {
    if !require_root() || !require_programs(&[ZEBRA, FRR_BGPD, "vtysh"]) {
        return;
    }
    let (ns_us, ns_frr) = linked_pair(
        &[&format!("{OURS4}/24"), &format!("{OURS6}/64")],
        &[&format!("{THEIRS4}/24"), &format!("{THEIRS6}/64")],
    );

    let dir = tempfile::tempdir().unwrap();
    // FRR drops to user `frr`: its directory is its own, right under /tmp.
    let frr_tmp = tempfile::Builder::new().prefix("frr").tempdir().unwrap();
    let frr_dir = frr_tmp.path().to_owned();
    let chown = Command::new("chown")
        .arg("frr:frr")
        .arg(&frr_dir)
        .status()
        .unwrap();
    assert!(chown.success(), "chown frr:frr {}", frr_dir.display());
    let (_zebra, _frr_bgpd) = start_frr(&ns_frr, &frr_dir);
    let ours = Daemon::start(
        &ns_us,
        dir.path(),
        &format!(
            "router_id: {OURS4}
asn: 65001
listen: \"[::]:179\"
{}peers:
  - address: {THEIRS4}
    asn: 65004
    local_address: {OURS4}
  - address: {THEIRS6}
    asn: 65004
    local_address: {OURS6}
announce: [10.48.0.0/24, 2001:db8:48::/48]
kernel: {{ table: 100, protocol: 201 }}
",
            Daemon::status_line(dir.path())
        ),
    );
    let frr_log = frr_dir.join("bgpd.log");
    let logs = [ours.log.as_path(), frr_log.as_path()];
    let vtysh = |command: &str| {
        run(Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&frr_dir)
            .args(["-d", "bgpd", "-c", command]))
    };
    let our_table = |family: &str| {
        ns_us
            .table_routes([family, "route", "show", "table", "100", "proto", "201"])
            .unwrap()
    };

    wait_for("both sessions Established on our side", &logs, || {
        ours.established(THEIRS4) && ours.established(THEIRS6)
    });
    // FRR advertised its hostname (FQDN capability) and we took the OPEN.
    let nbr = vtysh(&format!("show bgp neighbors {OURS4}"));
    assert!(nbr.contains("BGP state = Established"), "{nbr}");
    assert!(nbr.contains("Hostname Capability: advertised"), "{nbr}");

    // Ours in FRR's RIB and FRR's kernel (through zebra).
    wait_for("FRR to learn 10.48.0.0/24 from us", &logs, || {
        let out = vtysh("show bgp ipv4 unicast 10.48.0.0/24");
        out.contains("65001") && out.contains(&format!("{OURS4} from {OURS4}"))
    });
    wait_for("FRR to learn 2001:db8:48::/48 from us", &logs, || {
        let out = vtysh("show bgp ipv6 unicast 2001:db8:48::/48");
        out.contains("65001") && out.contains(OURS6)
    });
    wait_for("FRR's kernel to get both our routes", &logs, || {
        ns_frr
            .ip(["-4", "route", "show", "10.48.0.0/24"])
            .unwrap()
            .contains(&format!("via {OURS4}"))
            && ns_frr
                .ip(["-6", "route", "show", "2001:db8:48::/48"])
                .unwrap()
                .contains(&format!("via {OURS6}"))
    });
    // FRR's in our kernel table and Loc-RIB.
    wait_for("our kernel to get FRR's routes", &logs, || {
        our_table("-4").contains(&format!("10.59.0.0/24 via {THEIRS4}"))
            && our_table("-6").contains(&format!("2001:db8:59::/48 via {THEIRS6}"))
    });
    let status = ours.status();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("10.59.0.0/24") && l.contains("as_path [65004]")),
        "{status}"
    );

    // Route refresh: `clear bgp ... soft in` makes FRR send ROUTE-REFRESH
    // (FRR keeps no copy of what it received), and we send our routes again.
    let stats = |peer: &str| -> (u64, u64) {
        let out = vtysh(&format!("show bgp neighbors {peer}"));
        let row = |name: &str| -> u64 {
            let line = out
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in:\n{out}"));
            // "    Route Refresh:          0          1": sent, received.
            let f: Vec<&str> = line.split_whitespace().collect();
            match name {
                "Route Refresh:" => f[f.len() - 2].parse().unwrap(),
                _ => f[f.len() - 1].parse().unwrap(),
            }
        };
        (row("Route Refresh:"), row("Updates:"))
    };
    let (refresh_before, updates_before) = stats(OURS4);
    let out = vtysh(&format!("clear bgp {OURS4} soft in"));
    assert!(!out.contains('%'), "clear bgp: {out}");
    wait_for(
        "FRR to send ROUTE-REFRESH and get our table again",
        &logs,
        || {
            let (refresh, updates) = stats(OURS4);
            refresh > refresh_before && updates > updates_before
        },
    );
    assert!(
        ours.established(THEIRS4),
        "a refresh must not reset the session"
    );
    let out = vtysh("show bgp ipv4 unicast 10.48.0.0/24");
    assert!(out.contains("65001"), "{out}");
}
