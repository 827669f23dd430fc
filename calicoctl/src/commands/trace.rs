//! `calicoctl policy trace`: the arguments read into a [`policy::trace::Query`]
//! (label-set ends added to the resources as hypothetical pods), the trace
//! computed by `policy::trace` on the model `policy compile` builds, and
//! printed as text or `-o json|yaml`:
//!
//! ```text
//! shop/c (10.201.3.1) -> shop/b (10.201.2.1): tcp port 80, IPv4
//!
//! egress of shop/c
//!   profile kns.shop: allow
//!     rule 0 (allow): matched
//!   => allow: Profile kns.shop rule 0 (allow)
//!
//! ingress of shop/b
//!   tier security
//!     GlobalNetworkPolicy security.gate: deny
//!       rule 0 (deny): matched
//!   => deny: GlobalNetworkPolicy security.gate rule 0 (deny)
//!
//! verdict: DENY (ingress of shop/b: GlobalNetworkPolicy security.gate rule 0 (deny))
//! ```

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;

use anyhow::Result;
use api::{Protocol, Resource};
use policy::ir::Family;
use policy::trace::{Decision, Direction, End, Query, Role, StepResult, Trace, hypothetical};

use crate::cli::{FlowOutput, PolicyTraceArgs};
use crate::errors::Invalid;

/// One end as given: resolved against the resources once they are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    Endpoint(String),
    Addr(IpAddr),
    Labels {
        namespace: String,
        labels: Vec<(String, String)>,
    },
}

/// A parsed `policy trace`.
#[derive(Debug)]
pub struct TraceRequest {
    src: Spec,
    dst: Spec,
    protocol: Protocol,
    port: u16,
    family: Option<Family>,
    /// Trace the model with its staged policies enforced.
    pub staged: bool,
    output: FlowOutput,
}

impl TraceRequest {
    /// A table-less trace of `src` to `dst` (as `--src`, `--dst`), for
    /// callers that want the [`Trace`] itself ([`TraceRequest::trace`]).
    pub fn new(src: &str, dst: &str, protocol: &str, port: u16) -> Result<Self, Invalid> {
        Self::from_args(&PolicyTraceArgs {
            src: src.to_string(),
            dst: dst.to_string(),
            protocol: protocol.to_string(),
            port,
            ip_version: None,
            staged: false,
            model: crate::cli::PolicyModelArgs::default(),
            output: FlowOutput::Json,
        })
    }

    pub fn from_args(args: &PolicyTraceArgs) -> Result<Self, Invalid> {
        let protocol = (args.protocol.parse())
            .map_err(|e| Invalid::new(format!("--protocol {:?}: {e}", args.protocol)))?;
        Ok(Self {
            src: spec(&args.src).map_err(|e| Invalid::new(format!("--src {:?}: {e}", args.src)))?,
            dst: spec(&args.dst).map_err(|e| Invalid::new(format!("--dst {:?}: {e}", args.dst)))?,
            protocol,
            port: args.port,
            family: args.ip_version.as_deref().map(|v| match v {
                "6" => Family::V6,
                _ => Family::V4,
            }),
            staged: args.staged,
            output: args.output,
        })
    }

    /// The query, with a hypothetical pod added to `resources` for each
    /// label-set end.
    pub fn query(&self, resources: &mut Vec<Resource>, node: Option<&str>) -> Result<Query> {
        let mut end = |spec: &Spec, role: Role| -> Result<End, Invalid> {
            Ok(match spec {
                Spec::Endpoint(name) => End::Endpoint(name.clone()),
                Spec::Addr(addr) => End::Addr(*addr),
                Spec::Labels { namespace, labels } => {
                    let (pod, name) = hypothetical(resources, role, namespace, labels, node)
                        .map_err(|e| Invalid::new(format!("{}: {e}", flag(role))))?;
                    resources.push(pod);
                    End::Endpoint(name)
                }
            })
        };
        Ok(Query {
            src: end(&self.src, Role::Source)?,
            dst: end(&self.dst, Role::Destination)?,
            protocol: self.protocol,
            port: self.port,
            family: self.family,
        })
    }

    /// Traces the query on the model.
    pub fn trace(&self, model: &policy::Model, query: &Query) -> Result<Trace, Invalid> {
        policy::trace(model, query).map_err(|e| {
            let at = match e.end() {
                Some(role) => flag(role),
                None if matches!(e, policy::trace::TraceError::Family(_)) => "--ip-version",
                None => "trace",
            };
            Invalid::new(format!("{at}: {e}"))
        })
    }

    /// Traces the query on the model and prints it.
    pub fn print(&self, model: &policy::Model, query: &Query, out: &mut dyn Write) -> Result<()> {
        let trace = self.trace(model, query)?;
        match self.output {
            FlowOutput::Table if self.staged => {
                writeln!(out, "(staged policies enforced: the pending verdict)")?;
                write!(out, "{}", text(&trace))?;
            }
            FlowOutput::Table => write!(out, "{}", text(&trace))?,
            FlowOutput::Json => writeln!(out, "{}", serde_json::to_string_pretty(&trace)?)?,
            FlowOutput::Yaml => write!(out, "{}", serde_yaml::to_string(&trace)?)?,
        }
        Ok(())
    }
}

fn flag(role: Role) -> &'static str {
    match role {
        Role::Source => "--src",
        Role::Destination => "--dst",
    }
}

/// An end: a label set (`[ns:]k=v,...`), an address, or an endpoint name.
fn spec(text: &str) -> Result<Spec, String> {
    if text.contains('=') {
        let (namespace, list) = match text.split_once(':') {
            Some((ns, rest)) if !ns.contains('=') => (ns, rest),
            _ => (super::DEFAULT_NAMESPACE, text),
        };
        let mut labels = Vec::new();
        for pair in list.split(',') {
            let (k, v) = (pair.split_once('='))
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            labels.push((k.trim().to_string(), v.trim().to_string()));
        }
        if namespace.is_empty() {
            return Err("the namespace before ':' is empty".into());
        }
        return Ok(Spec::Labels {
            namespace: namespace.to_string(),
            labels,
        });
    }
    if let Ok(addr) = text.parse() {
        return Ok(Spec::Addr(addr));
    }
    if text.is_empty() || text.split('/').count() > 2 || text.split('/').any(str::is_empty) {
        return Err(
            "expected ns/name (workload), name (host endpoint), an IP or [ns:]key=value,...".into(),
        );
    }
    Ok(Spec::Endpoint(text.to_string()))
}

/// The trace as text: the packet, each direction's tiers, policies and
/// rules, the verdict.
pub fn text(t: &Trace) -> String {
    let end = |e: &policy::trace::EndView| match &e.endpoint {
        Some(name) => format!("{name} ({})", e.address),
        None => e.address.to_string(),
    };
    let port = t.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let mut out = format!(
        "{} -> {}: {}{port}, IPv{}\n",
        end(&t.src),
        end(&t.dst),
        t.protocol,
        t.family
    );
    for d in &t.directions {
        out.push('\n');
        direction(&mut out, d);
    }
    let verdict = match t.verdict {
        Decision::Allow => "ALLOW",
        Decision::Deny => "DENY",
    };
    let _ = writeln!(out, "\nverdict: {verdict} ({})", t.reason);
    out
}

fn direction(out: &mut String, d: &Direction) {
    let who = d.endpoint.clone().unwrap_or_else(|| d.address.to_string());
    let reached = if d.reached {
        ""
    } else {
        " (not reached: the egress denied; as it would decide)"
    };
    let _ = writeln!(out, "{} of {who}{reached}", d.direction);
    let mut tier: Option<&str> = None;
    for p in &d.policies {
        let indent = match p.tier.as_deref() {
            Some(t) => {
                if tier != Some(t) {
                    let _ = writeln!(out, "  tier {t}");
                    tier = Some(t);
                }
                "    "
            }
            None => "  ",
        };
        let result = match p.result {
            StepResult::Allow => "allow",
            StepResult::Deny => "deny",
            StepResult::Pass => "pass (to the next tier)",
            StepResult::NoMatch => "no rule matched",
            StepResult::Skipped => "skipped (an earlier policy of the tier passed)",
        };
        let _ = writeln!(out, "{indent}{} {}: {result}", p.kind, p.name);
        for r in &p.rules {
            let what = match (&r.reason, r.matched) {
                (_, true) => "matched".to_string(),
                (Some(why), false) => format!("no match: {why}"),
                (None, false) => "no match".to_string(),
            };
            let _ = writeln!(out, "{indent}  rule {} ({}): {what}", r.index, r.action);
        }
    }
    let verdict = match d.verdict {
        Some(Decision::Allow) => "allow",
        Some(Decision::Deny) => "deny",
        None => "-",
    };
    let _ = writeln!(out, "  => {verdict}: {}", d.decided_by);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_label_sets_addresses_or_endpoint_names() {
        assert_eq!(spec("shop/web"), Ok(Spec::Endpoint("shop/web".into())));
        assert_eq!(spec("host-eth0"), Ok(Spec::Endpoint("host-eth0".into())));
        assert_eq!(
            spec("fd00::1"),
            Ok(Spec::Addr("fd00::1".parse().expect("v6")))
        );
        assert_eq!(
            spec("shop:app=web, tier=front"),
            Ok(Spec::Labels {
                namespace: "shop".into(),
                labels: vec![
                    ("app".into(), "web".into()),
                    ("tier".into(), "front".into())
                ]
            })
        );
        let Ok(Spec::Labels { namespace, .. }) = spec("app=web") else {
            panic!("a label set");
        };
        assert_eq!(namespace, "default");
        for bad in ["", "a/b/c", "/x", "app=web,tier", "=x", ":a=b"] {
            assert!(spec(bad).is_err(), "{bad:?}");
        }
    }
}
