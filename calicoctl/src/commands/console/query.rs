//! The console API's query strings, checked (pure): an unknown parameter,
//! an empty or out-of-range value, an unknown action is a [`QueryError`]
//! naming the parameter, which the API answers with 400.

use std::collections::BTreeMap;

use crate::cli::{FlowAction, FlowOutput, FlowsArgs};
use crate::commands::flows::LocalFilter;
use crate::commands::trace::TraceRequest;

/// A query string's parameters (the last value of a repeated one).
pub type Params = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct QueryError {
    pub param: String,
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        param: param.to_string(),
        message: message.into(),
    }
}

/// Refuses parameters not in `known`.
fn only(raw: &Params, known: &[&str]) -> Result<(), QueryError> {
    match raw.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if known.is_empty() => Err(err(k, "this API takes no parameters")),
        Some(k) => Err(err(
            k,
            format!("unknown parameter; known: {}", known.join(", ")),
        )),
    }
}

/// A parameter's value, if given; given empty is an error.
fn text<'a>(raw: &'a Params, param: &str) -> Result<Option<&'a str>, QueryError> {
    match raw.get(param).map(|v| v.trim()) {
        Some("") => Err(err(param, "is empty")),
        v => Ok(v),
    }
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    raw: &Params,
    param: &str,
    range: (T, T),
    default: T,
) -> Result<T, QueryError> {
    let Some(v) = text(raw, param)? else {
        return Ok(default);
    };
    let n: T = v
        .parse()
        .map_err(|_| err(param, format!("{v:?} is not a number")))?;
    if n < range.0 || n > range.1 {
        return Err(err(
            param,
            format!("{n} is out of range ({} to {})", range.0, range.1),
        ));
    }
    Ok(n)
}

/// Comma-separated values of a parameter.
fn list<'a>(raw: &'a Params, param: &str) -> Result<Vec<&'a str>, QueryError> {
    Ok(text(raw, param)?
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

/// A flows query: what goes to the server, and what is filtered here.
#[derive(Debug)]
pub struct FlowsQuery {
    pub args: FlowsArgs,
    pub local: LocalFilter,
}

const FLOWS: [&str; 8] = [
    "namespace",
    "endpoint",
    "action",
    "policy",
    "port",
    "protocol",
    "last",
    "since",
];

/// `/api/flows`: `namespace`, `endpoint` (`name` or `ns/name`), `action`
/// (allow, deny, pass; comma-separated), `policy`, `port` (comma-separated),
/// `protocol`, `last` (default 200), `since` (seconds, default 3600).
pub fn flows(raw: &Params, server: &str) -> Result<FlowsQuery, QueryError> {
    only(raw, &FLOWS)?;
    let action = list(raw, "action")?
        .into_iter()
        .map(|a| match a.to_ascii_lowercase().as_str() {
            "allow" => Ok(FlowAction::Allow),
            "deny" => Ok(FlowAction::Deny),
            "pass" => Ok(FlowAction::Pass),
            _ => Err(err("action", format!("{a:?} is not allow, deny or pass"))),
        })
        .collect::<Result<_, _>>()?;
    let port = list(raw, "port")?
        .into_iter()
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(err("port", format!("{p:?} is not a port (1 to 65535)"))),
        })
        .collect::<Result<_, _>>()?;
    let namespace = text(raw, "namespace")?.map(str::to_string);
    let endpoint = text(raw, "endpoint")?.map(str::to_string);
    let args = FlowsArgs {
        server: server.to_string(),
        follow: false,
        last: number(raw, "last", (1usize, 100_000), 200)?,
        since: number(raw, "since", (1u32, 86_400), 3600)?,
        namespace: namespace.clone(),
        endpoint: endpoint.clone(),
        selector: None,
        action,
        policy: list(raw, "policy")?
            .into_iter()
            .map(str::to_string)
            .collect(),
        port,
        protocol: list(raw, "protocol")?
            .into_iter()
            .map(str::to_string)
            .collect(),
        output: FlowOutput::Json,
    };
    Ok(FlowsQuery {
        args,
        local: LocalFilter {
            namespace,
            endpoint,
            selector: None,
        },
    })
}

/// `/api/trace`: `src` and `dst` (as `policy trace --src`), `protocol`
/// (default tcp), `port` (default 80).
pub fn trace(raw: &Params) -> Result<TraceRequest, QueryError> {
    only(raw, &["src", "dst", "protocol", "port"])?;
    let src = text(raw, "src")?.ok_or_else(|| err("src", "is required"))?;
    let dst = text(raw, "dst")?.ok_or_else(|| err("dst", "is required"))?;
    let protocol = text(raw, "protocol")?.unwrap_or("tcp");
    let port = number(raw, "port", (0u16, u16::MAX), 80)?;
    TraceRequest::new(src, dst, protocol, port).map_err(|e| {
        let text = e.to_string();
        let param = ["--src", "--dst", "--protocol", "--port"]
            .into_iter()
            .find(|f| text.starts_with(f))
            .map_or("trace", |f| &f[2..]);
        err(param, text)
    })
}

/// An API that takes no parameters.
pub fn none(raw: &Params) -> Result<(), QueryError> {
    only(raw, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flow_filters_are_read_and_checked_by_name() {
        let q = flows(
            &params(&[
                ("namespace", "shop"),
                ("action", "deny,allow"),
                ("port", "80, 443"),
                ("last", "5"),
            ]),
            "unix:/run/goldmane.sock",
        )
        .unwrap();
        assert_eq!(q.args.action, [FlowAction::Deny, FlowAction::Allow]);
        assert_eq!(q.args.port, [80, 443]);
        assert_eq!((q.args.last, q.args.since), (5, 3600));
        assert_eq!(q.local.namespace.as_deref(), Some("shop"));
        for (bad, param, words) in [
            (("port", "http"), "port", "not a port"),
            (("port", "0"), "port", "not a port"),
            (("action", "maybe"), "action", "not allow, deny or pass"),
            (("last", "0"), "last", "out of range"),
            (("since", "x"), "since", "not a number"),
            (("namespace", ""), "namespace", "is empty"),
            (("colour", "red"), "colour", "unknown parameter"),
        ] {
            let e = flows(&params(&[bad]), "x:1").unwrap_err();
            assert_eq!(e.param, param, "{e}");
            assert!(e.message.contains(words), "{e}");
        }
    }

    #[test]
    fn a_trace_needs_both_ends_and_names_a_bad_one() {
        assert!(
            trace(&params(&[
                ("src", "default/a"),
                ("dst", "10.0.0.1"),
                ("port", "8080")
            ]))
            .is_ok()
        );
        assert_eq!(trace(&params(&[("src", "a")])).unwrap_err().param, "dst");
        let e = trace(&params(&[
            ("src", "a/b"),
            ("dst", "c/d"),
            ("protocol", "tcpx"),
        ]))
        .unwrap_err();
        assert_eq!(e.param, "protocol", "{e}");
        assert_eq!(none(&params(&[("x", "1")])).unwrap_err().param, "x");
    }
}
