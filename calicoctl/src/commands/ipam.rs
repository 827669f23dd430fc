//! `calicoctl ipam`: show, check, release, split and configure, on
//! [`datastore::ipam::Ipam`]. Arguments and report files are read and
//! checked before the datastore is touched; the text this command prints is
//! made by pure functions (`usage_table`, `status_text`, `report_text`).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use datastore::ipam::{ConfigUpdate, IpStatus, Ipam, IpamError, PoolRef, Report, Usage};
use datastore::resources::ResourceStore;

use crate::cli::{IpamCommand, IpamOutput};
use crate::errors::Invalid;

/// One checked `ipam` command line.
#[derive(Debug)]
pub(crate) enum Request {
    Show { blocks: bool, json: bool },
    ShowConfig { json: bool },
    ShowIp { ip: IpAddr, json: bool },
    Check { output: Option<PathBuf> },
    ReleaseIp(IpAddr),
    ReleaseReport { path: PathBuf, report: Box<Report> },
    Split { pool: PoolRef, parts: u32 },
    Configure(ConfigUpdate),
}

impl Request {
    /// Checks the arguments (and reads a report file) without a datastore.
    pub(crate) fn from_args(command: IpamCommand) -> Result<Self> {
        Ok(match command {
            IpamCommand::Show(args) => {
                let json = args.output == IpamOutput::Json;
                match args.ip {
                    _ if args.show_configuration => Request::ShowConfig { json },
                    Some(ip) => Request::ShowIp { ip, json },
                    None => Request::Show {
                        blocks: args.show_blocks,
                        json,
                    },
                }
            }
            IpamCommand::Check(args) => Request::Check {
                output: args.output,
            },
            IpamCommand::Release(args) => match (args.ip, args.from_report) {
                (Some(ip), _) => Request::ReleaseIp(ip),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Invalid::new(format!("cannot read {}: {e}", path.display()))
                    })?;
                    let report: Report = serde_json::from_str(&text).map_err(|e| {
                        Invalid::new(format!(
                            "{}: not an `ipam check` report: {e}",
                            path.display()
                        ))
                    })?;
                    Request::ReleaseReport {
                        path,
                        report: Box::new(report),
                    }
                }
                (None, None) => return Err(Invalid::new("give --ip or --from-report").into()),
            },
            IpamCommand::Split(args) => {
                let pool = match (args.cidr, args.name) {
                    (Some(cidr), _) => PoolRef::Cidr(
                        cidr.parse()
                            .map_err(|_| Invalid::new(format!("--cidr {cidr:?} is not a CIDR")))?,
                    ),
                    (None, Some(name)) => PoolRef::Name(name),
                    (None, None) => return Err(Invalid::new("give --cidr or --name").into()),
                };
                Request::Split {
                    pool,
                    parts: args.number,
                }
            }
            IpamCommand::Configure(args) => Request::Configure(ConfigUpdate {
                strict_affinity: args.strict_affinity,
                max_blocks_per_host: args.max_blocks_per_host,
                auto_allocate_blocks: None,
            }),
        })
    }
}

/// IPAM errors that are the user's input to fix exit 2; others exit 1.
fn classify(err: IpamError) -> anyhow::Error {
    match err {
        IpamError::BlockMath(_) | IpamError::InvalidConfig(_) | IpamError::InvalidName { .. } => {
            Invalid::new(err.to_string()).into()
        }
        other => other.into(),
    }
}

/// Runs the request.
pub(crate) async fn run(
    store: &ResourceStore,
    request: Request,
    out: &mut dyn Write,
) -> Result<()> {
    let ipam = Ipam::new(store.kv().clone());
    match request {
        Request::Show { blocks, json } => {
            let usage = ipam.usage().await.map_err(classify)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&usage)?)?;
            } else {
                write!(out, "{}", usage_table(&usage, blocks))?;
            }
        }
        Request::ShowConfig { json } => {
            let config = ipam.config().await.map_err(classify)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&config)?)?;
            } else {
                write!(out, "{}", config_table(&config))?;
            }
        }
        Request::ShowIp { ip, json } => {
            let status = ipam.ip_status(ip).await.map_err(classify)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            } else {
                write!(out, "{}", status_text(&status))?;
            }
        }
        Request::Check { output } => {
            let report = ipam.check().await.map_err(classify)?;
            write!(out, "{}", report_text(&report))?;
            if let Some(path) = output {
                std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
                    .with_context(|| format!("writing the report to {}", path.display()))?;
                writeln!(out, "Report written to {}", path.display())?;
            }
            if !report.is_clean() {
                return Err(anyhow!("IPAM check found {} problem(s)", report.problems()));
            }
        }
        Request::ReleaseIp(ip) => {
            let unallocated = ipam.release_ips(&[ip]).await.map_err(classify)?;
            if !unallocated.is_empty() {
                return Err(anyhow!("{ip} is not allocated; nothing was released"));
            }
            writeln!(out, "Successfully released {ip}")?;
        }
        Request::ReleaseReport { path, report } => {
            let released = ipam
                .release_leaked(&report.leaked)
                .await
                .map_err(classify)?;
            let mut deleted = 0;
            for problem in report.handle_problems.iter().filter(|p| p.actual == 0) {
                if ipam
                    .delete_handle_if_unused(&problem.handle)
                    .await
                    .map_err(classify)?
                {
                    deleted += 1;
                }
            }
            for ip in &released {
                writeln!(out, "Released {ip}")?;
            }
            writeln!(
                out,
                "Released {} of the {} leaked address(es) in {}; deleted {deleted} handle(s) without addresses",
                released.len(),
                report.leaked.len(),
                path.display()
            )?;
            let skipped = report.leaked.len() - released.len();
            if skipped > 0 {
                writeln!(
                    out,
                    "{skipped} address(es) changed since the report and were left alone"
                )?;
            }
        }
        Request::Split { pool, parts } => {
            let children = ipam.split_pool(&pool, parts).await.map_err(classify)?;
            writeln!(
                out,
                "Successfully split the pool into {} pools:",
                children.len()
            )?;
            for child in children {
                writeln!(out, "  {}  {}", child.metadata.name, child.spec.cidr)?;
            }
        }
        Request::Configure(update) => {
            let config = ipam.configure(update).await.map_err(classify)?;
            writeln!(
                out,
                "Successfully set the IPAM configuration: strictAffinity={} maxBlocksPerHost={} autoAllocateBlocks={}",
                config.strict_affinity, config.max_blocks_per_host, config.auto_allocate_blocks
            )?;
        }
    }
    Ok(())
}

/// `5 (8%)`.
fn with_percent(n: u128, total: u128) -> String {
    let percent = n.saturating_mul(100).checked_div(total).unwrap_or(0);
    format!("{n} ({percent}%)")
}

/// Lays rows out in columns separated by two spaces; the first row is the header.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// The `ipam show` table: one row per pool, and per block with `blocks`.
pub(crate) fn usage_table(usage: &Usage, blocks: bool) -> String {
    let mut rows = vec![
        [
            "GROUPING",
            "CIDR",
            "HOST",
            "IPS TOTAL",
            "IPS IN USE",
            "IPS RESERVED",
            "IPS FREE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let block_row = |b: &datastore::ipam::BlockUsage| {
        let total = b.capacity as u128;
        vec![
            "Block".into(),
            b.cidr.to_string(),
            b.host.clone().unwrap_or_else(|| "-".into()),
            total.to_string(),
            with_percent(b.in_use as u128, total),
            with_percent(b.reserved as u128, total),
            with_percent(b.free as u128, total),
        ]
    };
    for pool in &usage.pools {
        rows.push(vec![
            if pool.disabled {
                "IP Pool (disabled)".into()
            } else {
                "IP Pool".into()
            },
            pool.cidr.to_string(),
            String::new(),
            pool.size.to_string(),
            with_percent(pool.in_use, pool.size),
            with_percent(pool.reserved, pool.size),
            with_percent(pool.free, pool.size),
        ]);
        if blocks {
            rows.extend(pool.blocks.iter().map(block_row));
        }
    }
    if blocks {
        rows.extend(usage.orphan_blocks.iter().map(|b| {
            let mut row = block_row(b);
            row[0] = "Block (no pool)".into();
            row
        }));
    }
    columns(&rows)
}

/// `ipam show --show-configuration`: Calico's property table.
pub(crate) fn config_table(c: &api::IPAMConfigurationSpec) -> String {
    let rows = [
        ["PROPERTY", "VALUE"].map(String::from).to_vec(),
        vec!["StrictAffinity".into(), c.strict_affinity.to_string()],
        vec![
            "AutoAllocateBlocks".into(),
            c.auto_allocate_blocks.to_string(),
        ],
        vec!["MaxBlocksPerHost".into(), c.max_blocks_per_host.to_string()],
        vec![
            "MinIPReclaimAgeSeconds".into(),
            c.min_ip_reclaim_age_seconds.to_string(),
        ],
    ];
    columns(&rows)
}

/// `ipam show --ip`: who owns the address.
pub(crate) fn status_text(s: &IpStatus) -> String {
    let mut text = String::new();
    match (&s.pool, s.allocated) {
        (None, false) => text.push_str(&format!("IP {} is not in any IP pool\n", s.ip)),
        (_, false) => text.push_str(&format!("IP {} is not assigned\n", s.ip)),
        (_, true) => {
            text.push_str(&format!("IP {} is in use\n", s.ip));
            text.push_str(&format!(
                "Handle: {}\n",
                s.handle.as_deref().unwrap_or("(none)")
            ));
            if !s.attrs.is_empty() {
                text.push_str("Attributes:\n");
                for (k, v) in &s.attrs {
                    text.push_str(&format!("  {k}: {v}\n"));
                }
            }
        }
    }
    if let Some(pool) = &s.pool {
        text.push_str(&format!("Pool: {pool}\n"));
    }
    if let Some(block) = s.block {
        text.push_str(&format!(
            "Block: {block} (affinity: {})\n",
            s.block_host
                .as_deref()
                .map_or("none".to_owned(), |h| format!("host:{h}"))
        ));
    }
    if let Some(r) = &s.reserved_by {
        text.push_str(&format!("Reserved by IPReservation {r}\n"));
    }
    text
}

/// The human-readable `ipam check` report.
pub(crate) fn report_text(r: &Report) -> String {
    let mut text = format!(
        "Checked IPAM data at revision {}: {} block(s), {} allocated address(es), {} handle(s), \
         {} workload endpoint address(es)\n",
        r.revision, r.blocks, r.allocated, r.handles, r.workload_addresses
    );
    for h in &r.hosts {
        text.push_str(&format!(
            "  host {}: {} block(s), {} address(es){}\n",
            h.host,
            h.blocks,
            h.addresses,
            if h.node_exists {
                ""
            } else {
                " (no Node resource)"
            }
        ));
    }
    if r.is_clean() {
        text.push_str("No problems found\n");
        return text;
    }
    text.push_str(&format!("Found {} problem(s):\n", r.problems()));
    for l in &r.leaked {
        text.push_str(&format!(
            "  leaked address {} in block {} (handle {}): {:?}\n",
            l.ip,
            l.block,
            l.handle.as_deref().unwrap_or("none"),
            l.reason
        ));
    }
    for u in &r.unallocated {
        text.push_str(&format!(
            "  workload endpoint {} uses {}, {}\n",
            u.endpoint,
            u.ip,
            if u.in_pool {
                "which IPAM has not allocated"
            } else {
                "which is in no enabled IP pool"
            }
        ));
    }
    for p in &r.handle_problems {
        if p.block.is_empty() {
            text.push_str(&format!("  handle {} has no addresses\n", p.handle));
        } else {
            text.push_str(&format!(
                "  handle {} counts {} address(es) in block {}, the block holds {}\n",
                p.handle, p.recorded, p.block, p.actual
            ));
        }
    }
    for a in &r.affinity_problems {
        text.push_str(&format!(
            "  affinity of host {} to block {}: {:?}\n",
            a.host, a.block, a.issue
        ));
    }
    for b in &r.bad_values {
        text.push_str(&format!("  unreadable value at {}: {}\n", b.key, b.message));
    }
    for o in &r.pool_overlaps {
        text.push_str(&format!(
            "  IPPool {} ({}) overlaps IPPool {} ({})\n",
            o.pool, o.cidr, o.other, o.other_cidr
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use datastore::ipam::{BlockUsage, PoolUsage};

    #[test]
    fn usage_table_shows_pools_and_blocks_with_percentages() {
        let usage = Usage {
            pools: vec![PoolUsage {
                name: "p".into(),
                cidr: "10.0.0.0/24".parse().unwrap(),
                block_size: 26,
                disabled: false,
                size: 256,
                in_use: 64,
                reserved: 16,
                free: 176,
                blocks: vec![BlockUsage {
                    cidr: "10.0.0.0/26".parse().unwrap(),
                    host: Some("node1".into()),
                    capacity: 64,
                    in_use: 64,
                    reserved: 0,
                    free: 0,
                }],
            }],
            orphan_blocks: vec![],
        };
        assert_eq!(
            usage_table(&usage, true),
            "\
GROUPING  CIDR         HOST   IPS TOTAL  IPS IN USE  IPS RESERVED  IPS FREE
IP Pool   10.0.0.0/24         256        64 (25%)    16 (6%)       176 (68%)
Block     10.0.0.0/26  node1  64         64 (100%)   0 (0%)        0 (0%)
"
        );
        assert_eq!(usage_table(&usage, false).lines().count(), 2);
    }
}
