//! `calicoctl flows`: the flows through a host and the policy rule that
//! decided each, from felix's flow API (Goldmane's `Flows` service), as
//! `hubble observe` shows Cilium's: the last N, or `--follow` live.
//!
//! ```text
//! TIME      SOURCE         DESTINATION   PROTO  PORT  REPORTER  ACTION  POLICY                          PACKETS IN/OUT  BYTES IN/OUT
//! 12:00:15  shop/client    shop/web      tcp    8080  dst       allow   default: NetworkPolicy shop/web rule 0  3/2  180/120
//! ```
//!
//! The action, port, protocol and policy filters go to the server; the
//! namespace, endpoint and label selector (either end) are applied here.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use api::selector::Selector;
use flows::proto::{self, flows_client::FlowsClient};
use serde::Serialize;

use crate::cli::{FlowAction, FlowOutput, FlowsArgs};

/// One flow as `-o json|yaml` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowView {
    pub start_time: i64,
    pub end_time: i64,
    pub source: EndView,
    pub destination: EndView,
    pub protocol: String,
    pub port: i64,
    pub reporter: String,
    pub action: String,
    /// The rule that decided it (the last enforced hit), as the table says.
    pub decided_by: String,
    pub policies: Vec<HitView>,
    pub pending_policies: Vec<HitView>,
    pub packets_in: i64,
    pub packets_out: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub connections_started: i64,
    pub connections_completed: i64,
    pub connections_live: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndView {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HitView {
    pub kind: String,
    pub tier: String,
    pub namespace: String,
    pub name: String,
    pub action: String,
    pub rule_index: i64,
}

fn enum_name<E: std::fmt::Debug>(value: Result<E, prost::UnknownEnumValue>) -> String {
    value.map_or_else(|e| format!("{}", e.0), |v| format!("{v:?}"))
}

fn lower(s: String) -> String {
    s.to_lowercase()
}

impl HitView {
    fn of(h: &proto::PolicyHit) -> HitView {
        HitView {
            kind: enum_name(proto::PolicyKind::try_from(h.kind)),
            tier: h.tier.clone(),
            namespace: h.namespace.clone(),
            name: h.name.clone(),
            action: lower(enum_name(proto::Action::try_from(h.action))),
            rule_index: h.rule_index,
        }
    }

    /// `default: NetworkPolicy shop/web rule 0`, `default: end of tier`.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            "EndOfTier" if self.tier == "__PROFILE__" => "no policy or profile allowed".into(),
            "EndOfTier" => format!("{}: end of tier", self.tier),
            "Profile" => format!("profile {} rule {}", self.name, self.rule_index),
            kind => {
                let kind = match kind {
                    "CalicoNetworkPolicy" => "NetworkPolicy",
                    "NetworkPolicy" => "KubernetesNetworkPolicy",
                    other => other,
                };
                let name = if self.namespace.is_empty() {
                    self.name.clone()
                } else {
                    format!("{}/{}", self.namespace, self.name)
                };
                format!("{}: {kind} {name} rule {}", self.tier, self.rule_index)
            }
        }
    }
}

impl FlowView {
    pub fn of(flow: &proto::Flow) -> FlowView {
        let key = flow.key.clone().unwrap_or_default();
        let trace = key.policies.clone().unwrap_or_default();
        let policies: Vec<HitView> = trace.enforced_policies.iter().map(HitView::of).collect();
        let end = |kind: i32, namespace: &str, name: &str, labels: &[String]| EndView {
            kind: enum_name(proto::EndpointType::try_from(kind)),
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels: labels.to_vec(),
        };
        FlowView {
            start_time: flow.start_time,
            end_time: flow.end_time,
            source: end(
                key.source_type,
                &key.source_namespace,
                &key.source_name,
                &flow.source_labels,
            ),
            destination: end(
                key.dest_type,
                &key.dest_namespace,
                &key.dest_name,
                &flow.dest_labels,
            ),
            protocol: key.proto.clone(),
            port: key.dest_port,
            reporter: lower(enum_name(proto::Reporter::try_from(key.reporter))),
            action: lower(enum_name(proto::Action::try_from(key.action))),
            decided_by: policies.last().map(HitView::describe).unwrap_or_default(),
            pending_policies: trace.pending_policies.iter().map(HitView::of).collect(),
            policies,
            packets_in: flow.packets_in,
            packets_out: flow.packets_out,
            bytes_in: flow.bytes_in,
            bytes_out: flow.bytes_out,
            connections_started: flow.num_connections_started,
            connections_completed: flow.num_connections_completed,
            connections_live: flow.num_connections_live,
        }
    }
}

impl EndView {
    fn display(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// Its labels as a map, for selectors.
    fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.labels
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// What the command filters here, on either end of a flow.
#[derive(Debug)]
pub struct LocalFilter {
    pub namespace: Option<String>,
    pub endpoint: Option<String>,
    pub selector: Option<Selector>,
}

impl LocalFilter {
    pub fn keeps(&self, f: &FlowView) -> bool {
        let ends = [&f.source, &f.destination];
        let namespace = self
            .namespace
            .as_ref()
            .is_none_or(|ns| ends.iter().any(|e| &e.namespace == ns));
        let endpoint = self
            .endpoint
            .as_ref()
            .is_none_or(|name| ends.iter().any(|e| &e.name == name || &e.display() == name));
        let selector = self
            .selector
            .as_ref()
            .is_none_or(|s| ends.iter().any(|e| s.matches(&e.labels())));
        namespace && endpoint && selector
    }
}

/// The server's filter for `args`.
pub fn server_filter(args: &FlowsArgs) -> proto::Filter {
    let exact = |v: &str| proto::StringMatch {
        value: v.to_string(),
        r#type: proto::MatchType::Exact as i32,
    };
    proto::Filter {
        actions: args
            .action
            .iter()
            .map(|a| match a {
                FlowAction::Allow => proto::Action::Allow as i32,
                FlowAction::Deny => proto::Action::Deny as i32,
                FlowAction::Pass => proto::Action::Pass as i32,
            })
            .collect(),
        dest_ports: args
            .port
            .iter()
            .map(|&p| proto::PortMatch { port: p.into() })
            .collect(),
        protocols: args
            .protocol
            .iter()
            .map(|p| exact(&p.to_lowercase()))
            .collect(),
        policies: args
            .policy
            .iter()
            .map(|name| proto::PolicyMatch {
                name: Some(exact(name)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn time_of_day(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

const HEADER: [&str; 10] = [
    "TIME",
    "SOURCE",
    "DESTINATION",
    "PROTO",
    "PORT",
    "REPORTER",
    "ACTION",
    "POLICY",
    "PACKETS IN/OUT",
    "BYTES IN/OUT",
];

fn row(f: &FlowView) -> [String; 10] {
    [
        time_of_day(f.start_time),
        f.source.display(),
        f.destination.display(),
        f.protocol.clone(),
        f.port.to_string(),
        f.reporter.clone(),
        f.action.clone(),
        f.decided_by.clone(),
        format!("{}/{}", f.packets_in, f.packets_out),
        format!("{}/{}", f.bytes_in, f.bytes_out),
    ]
}

/// The flows as a table, columns as wide as their widest cell.
pub fn table(flows: &[FlowView]) -> String {
    let rows: Vec<[String; 10]> = flows.iter().map(row).collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&HEADER.map(String::from));
    for r in &rows {
        out += &line(r);
    }
    out
}

fn print(format: FlowOutput, flows: &[FlowView], out: &mut dyn Write) -> Result<()> {
    match format {
        FlowOutput::Table => write!(out, "{}", table(flows))?,
        FlowOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(flows)?)?,
        FlowOutput::Yaml => write!(out, "{}", serde_yaml::to_string(flows)?)?,
    }
    Ok(())
}

async fn client(server: &str) -> Result<FlowsClient<tonic::transport::Channel>> {
    let endpoint = flows::push::endpoint(server).context("--server")?;
    let channel = endpoint.connect().await.with_context(|| {
        format!(
            "connecting to the flow API at {server} (is felix, or the cluster's goldmane, running with flow logs on?)"
        )
    })?;
    Ok(FlowsClient::new(channel))
}

/// Runs `calicoctl flows`.
pub async fn run(args: &FlowsArgs, out: &mut dyn Write) -> Result<()> {
    let local = LocalFilter {
        namespace: args.namespace.clone(),
        endpoint: args.endpoint.clone(),
        selector: match &args.selector {
            Some(s) => Some(Selector::parse(s).map_err(|e| anyhow!("--selector: {e}"))?),
            None => None,
        },
    };
    if args.follow && args.output != FlowOutput::Table {
        bail!("--follow prints a table; -o json and -o yaml list the last flows");
    }
    if args.follow {
        let mut client = client(&args.server).await?;
        let filter = server_filter(args);
        let request = proto::FlowStreamRequest {
            start_time_gte: -i64::from(args.since),
            filter: Some(filter),
            aggregation_interval: 15,
        };
        let mut stream = client
            .stream(request)
            .await
            .map_err(|s| anyhow!("the flow API refused the stream: {}", s.message()))?
            .into_inner();
        write!(out, "{}", table(&[]))?;
        out.flush()?;
        while let Some(result) = stream
            .message()
            .await
            .map_err(|s| anyhow!("the flow stream ended: {}", s.message()))?
        {
            let Some(view) = result.flow.as_ref().map(FlowView::of) else {
                continue;
            };
            if local.keeps(&view) {
                let rendered = table(&[view]);
                // The row without the header.
                write!(out, "{}", rendered.lines().nth(1).unwrap_or_default())?;
                writeln!(out)?;
                out.flush()?;
            }
        }
        return Ok(());
    }
    let flows = list(args, &local).await?;
    print(args.output, &flows, out)
}

/// The last `args.last` flows that pass the server's and `local`'s
/// filters, oldest first.
pub async fn list(args: &FlowsArgs, local: &LocalFilter) -> Result<Vec<FlowView>> {
    let mut client = client(&args.server).await?;
    let filter = server_filter(args);
    let request = proto::FlowListRequest {
        start_time_gte: -i64::from(args.since),
        filter: Some(filter),
        sort_by: vec![proto::SortOption {
            sort_by: proto::SortBy::Time as i32,
        }],
        ..Default::default()
    };
    let listed = client
        .list(request)
        .await
        .map_err(|s| anyhow!("the flow API refused the request: {}", s.message()))?
        .into_inner();
    let mut flows: Vec<FlowView> = listed
        .flows
        .iter()
        .filter_map(|r| r.flow.as_ref())
        .map(FlowView::of)
        .filter(|f| local.keeps(f))
        .collect();
    flows.sort_by_key(|f| f.start_time);
    let skip = flows.len().saturating_sub(args.last);
    flows.drain(..skip);
    Ok(flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(
        kind: proto::PolicyKind,
        tier: &str,
        ns: &str,
        name: &str,
        rule: i64,
    ) -> proto::PolicyHit {
        proto::PolicyHit {
            kind: kind as i32,
            tier: tier.into(),
            namespace: ns.into(),
            name: name.into(),
            action: proto::Action::Allow as i32,
            rule_index: rule,
            ..Default::default()
        }
    }

    #[test]
    fn the_deciding_hit_reads_as_tier_kind_name_and_rule() {
        let view = |h| HitView::of(&h).describe();
        assert_eq!(
            view(hit(
                proto::PolicyKind::CalicoNetworkPolicy,
                "default",
                "shop",
                "web",
                0
            )),
            "default: NetworkPolicy shop/web rule 0"
        );
        assert_eq!(
            view(hit(proto::PolicyKind::EndOfTier, "security", "", "", -1)),
            "security: end of tier"
        );
        assert_eq!(
            view(hit(
                proto::PolicyKind::Profile,
                "__PROFILE__",
                "",
                "kns.shop",
                0
            )),
            "profile kns.shop rule 0"
        );
        assert_eq!(
            view(hit(
                proto::PolicyKind::GlobalNetworkPolicy,
                "default",
                "",
                "deny-all",
                2
            )),
            "default: GlobalNetworkPolicy deny-all rule 2"
        );
    }

    #[test]
    fn the_local_filter_keeps_a_flow_when_either_end_matches() {
        let end = |ns: &str, name: &str, labels: &[&str]| EndView {
            kind: "WorkloadEndpoint".into(),
            namespace: ns.into(),
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        };
        let flow = FlowView {
            start_time: 0,
            end_time: 15,
            source: end("shop", "client", &["app=client"]),
            destination: end("db", "store", &["app=db", "tier=data"]),
            protocol: "tcp".into(),
            port: 5432,
            reporter: "dst".into(),
            action: "deny".into(),
            decided_by: String::new(),
            policies: Vec::new(),
            pending_policies: Vec::new(),
            packets_in: 0,
            packets_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            connections_started: 1,
            connections_completed: 0,
            connections_live: 0,
        };
        let keeps = |namespace: Option<&str>, endpoint: Option<&str>, selector: Option<&str>| {
            LocalFilter {
                namespace: namespace.map(str::to_string),
                endpoint: endpoint.map(str::to_string),
                selector: selector.map(|s| Selector::parse(s).unwrap()),
            }
            .keeps(&flow)
        };
        assert!(keeps(None, None, None));
        assert!(keeps(Some("db"), None, None));
        assert!(!keeps(Some("other"), None, None));
        assert!(keeps(None, Some("shop/client"), None));
        assert!(keeps(None, Some("store"), Some("tier == 'data'")));
        assert!(!keeps(None, None, Some("app == 'web'")));
        let text = table(std::slice::from_ref(&flow));
        assert!(text.starts_with("TIME "), "{text}");
        assert!(
            text.contains("shop/client") && text.contains("db/store") && text.contains("5432"),
            "{text}"
        );
    }
}
