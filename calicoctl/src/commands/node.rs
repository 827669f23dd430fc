//! `calicoctl node status`: this host's BGP peers, read from the BGP status
//! socket that felix serves (`bgpd::status`, JSON request), printed as
//! Calico prints them from BIRD:
//!
//! ```text
//! Calico process is running.
//!
//! IPv4 BGP status
//! +--------------+-------------------+-------+----------+-------------+
//! | PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |
//! +--------------+-------------------+-------+----------+-------------+
//! | 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |
//! +--------------+-------------------+-------+----------+-------------+
//!
//! IPv6 BGP status
//! No IPv6 peers found.
//! ```
//!
//! STATE is BIRD's protocol state (`up` once Established, `start` before);
//! INFO the BGP state, with the last error while not Established; SINCE
//! the time of day (UTC) the peer entered its state, or the date if that
//! was a day or more ago.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use api::resources::status::{BgpPeerStatus, CalicoNodeStatus, civil_date, parse_rfc3339};
use api::{Kind, Resource};
use bgpd::status::{self, PeerReport, QueryError, Report};
use datastore::ResourceStore;

/// Prints the status from the socket at `socket`. No socket to talk to
/// means no felix: "Calico process is not running." and a failure.
pub async fn status(socket: &Path, out: &mut dyn Write) -> Result<()> {
    match status::query_report(socket).await {
        Ok(report) => {
            write!(out, "{}", render(&report, SystemTime::now()))?;
            Ok(())
        }
        Err(QueryError::Refused(reason)) => {
            writeln!(
                out,
                "Calico process is running.\n\nThe BGP speaker is not running: {reason}."
            )?;
            Ok(())
        }
        Err(e @ QueryError::Connect { .. }) => {
            writeln!(out, "Calico process is not running.")?;
            Err(anyhow!(e))
        }
        Err(e) => Err(anyhow!(e)),
    }
}

/// `node status --all`: every node's sessions (or `only` one node's) from
/// the CalicoNodeStatus resources felix writes.
pub async fn status_all(
    store: &ResourceStore,
    only: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut statuses: Vec<CalicoNodeStatus> = store
        .list(Kind::CalicoNodeStatus, None)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Resource::CalicoNodeStatus(s) => Some(s),
            _ => None,
        })
        .filter(|s| only.is_none_or(|n| s.spec.node == n))
        .collect();
    statuses.sort_by(|a, b| a.spec.node.cmp(&b.spec.node));
    if statuses.is_empty() {
        return Err(anyhow!(match only {
            Some(node) =>
                format!("no CalicoNodeStatus for node {node:?}: is its felix running with BGP?"),
            None =>
                "no node has reported its status (CalicoNodeStatus): is felix running with BGP?"
                    .into(),
        }));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    write!(out, "{}", render_all(&statuses, now))?;
    Ok(())
}

/// Every node's sessions in one table, and the nodes whose status is
/// stale (their felix stopped reporting), at `now` (seconds).
pub fn render_all(statuses: &[CalicoNodeStatus], now: u64) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for s in statuses {
        let node = &s.spec.node;
        let stale = s.is_stale(now);
        if stale {
            let age = s
                .age(now)
                .map_or_else(|| "never".to_string(), |a| format!("{a} s ago"));
            notes.push(format!(
                "{node}: last reported {age}; its felix is not running or cannot reach the datastore, so its sessions may be down"
            ));
        }
        let Some(bgp) = &s.status.bgp else { continue };
        for p in bgp.peers_v4.iter().chain(&bgp.peers_v6) {
            rows.push(all_row(node, p, stale, now));
        }
    }
    let mut out = if rows.is_empty() {
        "No BGP peers reported.\n".to_string()
    } else {
        table(
            [
                "NODE",
                "PEER ADDRESS",
                "PEER TYPE",
                "STATE",
                "SINCE",
                "PREFIXES IN/OUT",
                "INFO",
            ],
            &rows,
        )
    };
    for note in notes {
        out.push_str(&format!("\n{note}"));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn all_row(node: &str, p: &BgpPeerStatus, stale: bool, now: u64) -> [String; 7] {
    let established = p.state == "Established";
    let mut info = if established || p.reason.is_empty() {
        p.state.clone()
    } else {
        format!("{}: {}", p.state, p.reason)
    };
    if stale {
        info.push_str(" (stale)");
    }
    let since = parse_rfc3339(&p.since).map_or_else(
        || "-".into(),
        |t| since(UNIX_EPOCH + Duration::from_secs(now), now.saturating_sub(t)),
    );
    [
        node.to_string(),
        p.peer_ip.clone(),
        p.peer_type.clone(),
        if established { "up" } else { "start" }.into(),
        since,
        format!("{}/{}", p.prefixes_received, p.prefixes_advertised),
        info,
    ]
}

/// The whole output for `report`, with SINCE computed from `now`.
pub fn render(report: &Report, now: SystemTime) -> String {
    let mut out = String::from("Calico process is running.\n");
    for (family, v6) in [("IPv4", false), ("IPv6", true)] {
        out.push_str(&format!("\n{family} BGP status\n"));
        let rows: Vec<[String; 5]> = report
            .peers
            .iter()
            .filter(|p| p.addr.is_ipv6() == v6)
            .map(|p| row(p, now))
            .collect();
        if rows.is_empty() {
            out.push_str(&format!("No {family} peers found.\n"));
        } else {
            out.push_str(&table(
                ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
    }
    out.push('\n');
    out
}

fn row(p: &PeerReport, now: SystemTime) -> [String; 5] {
    let established = p.state == "Established";
    let info = match (&p.last_error, established) {
        (Some(e), false) => format!("{} {e}", p.state),
        _ => p.state.clone(),
    };
    [
        p.addr.to_string(),
        p.description.clone().unwrap_or_else(|| "-".into()),
        if established { "up" } else { "start" }.into(),
        since(now, p.since_secs),
        info,
    ]
}

/// When something that has lasted `secs` began: `HH:MM:SS` (UTC), or
/// `YYYY-MM-DD` from a day back.
pub fn since(now: SystemTime, secs: u64) -> String {
    let start = now
        .checked_sub(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if secs >= 86_400 {
        let (y, m, d) = civil_date(start / 86_400);
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        let t = start % 86_400;
        format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    }
}

/// A table as Calico's (tablewriter's) default: headers centred, cells
/// left-aligned, `+---+` rules above and below the header and at the end.
fn table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line =
        |cells: Vec<String>| cells.iter().map(|c| format!("| {c} ")).collect::<String>() + "|\n";
    let header = line(
        headers
            .iter()
            .zip(&widths)
            .map(|(h, w)| {
                let extra = w - h.len();
                format!(
                    "{}{h}{}",
                    " ".repeat(extra / 2),
                    " ".repeat(extra - extra / 2)
                )
            })
            .collect(),
    );
    let mut out = format!("{rule}{header}{rule}");
    for r in rows {
        out.push_str(&line(
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect(),
        ));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, kind: &str, state: &str, since_secs: u64) -> PeerReport {
        PeerReport {
            addr: addr.parse().unwrap(),
            asn: 64512,
            description: Some(kind.into()),
            state: state.into(),
            since_secs,
            last_error: None,
            received: 0,
            accepted: 0,
            advertised: 0,
            flaps: 0,
        }
    }

    #[test]
    fn peers_print_as_calicos_table_with_no_ipv6_peers() {
        // 2016-03-29 23:30:04 UTC
        let now = UNIX_EPOCH + Duration::from_secs(1_459_294_204 + 60);
        let report = Report {
            peers: vec![
                peer("172.17.8.102", "node-to-node mesh", "Established", 60),
                PeerReport {
                    last_error: Some("connection refused".into()),
                    ..peer("172.17.8.1", "global", "Active", 5)
                },
            ],
        };
        assert_eq!(
            render(&report, now),
            "\
Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+---------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |           INFO            |
+--------------+-------------------+-------+----------+---------------------------+
| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established               |
| 172.17.8.1   | global            | start | 23:30:59 | Active connection refused |
+--------------+-------------------+-------+----------+---------------------------+

IPv6 BGP status
No IPv6 peers found.

"
        );
    }

    #[test]
    fn since_is_a_date_from_a_day_back() {
        let now = UNIX_EPOCH + Duration::from_secs(1_459_294_204);
        assert_eq!(since(now, 0), "23:30:04");
        assert_eq!(since(now, 86_400 * 2), "2016-03-27");
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }
}
