//! Rule counters: every compiled rule counts its packets and bytes; read
//! back from the kernel's listing of the table (`nft -j list table`), the
//! counters of policy and profile rules, summed per model rule (a model
//! rule becomes several nft rules, one per family and port alternative),
//! for `/metrics`. [`Index::origin`](crate::flowlog::Index::origin) names
//! the policy of each chain.

use std::collections::BTreeMap;

use serde_json::Value;

/// One model rule's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// The rule index a rule's comment ends in: `shop/db ingress[2]` is 2,
/// and so is the first rule's, stamped (`…[2] #` and 16 hex digits: see
/// [`stamp`](crate::stamp)).
fn rule_index(comment: &str) -> Option<usize> {
    let unstamped = match comment.rsplit_once('#') {
        Some((rest, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            rest.trim_end()
        }
        _ => comment,
    };
    let inner = unstamped.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    inner[open + 1..].parse().ok()
}

/// Whether a chain holds a policy's or a profile's rules.
fn is_rule_chain(chain: &str) -> bool {
    ["np-", "gnp-", "pro-"].iter().any(|p| chain.starts_with(p))
}

/// The counts of every policy and profile rule in a `nft -j list table`
/// listing, by (chain, model rule index). Not JSON, or not a listing: an
/// error naming what was wrong.
pub fn rule_counts(json: &str) -> Result<BTreeMap<(String, usize), Count>, String> {
    let doc: Value =
        serde_json::from_str(json).map_err(|e| format!("the nft listing is not JSON: {e}"))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("the nft listing has no `nftables` array")?;
    let mut out: BTreeMap<(String, usize), Count> = BTreeMap::new();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let Some(chain) = rule
            .get("chain")
            .and_then(Value::as_str)
            .filter(|c| is_rule_chain(c))
        else {
            continue;
        };
        let Some(index) = rule
            .get("comment")
            .and_then(Value::as_str)
            .and_then(rule_index)
        else {
            continue;
        };
        let counter = (rule
            .get("expr")
            .and_then(Value::as_array)
            .into_iter()
            .flatten())
        .find_map(|e| e.get("counter"));
        let Some(counter) = counter else { continue };
        let get = |k| counter.get(k).and_then(Value::as_u64).unwrap_or(0);
        let c = out.entry((chain.to_string(), index)).or_default();
        c.packets += get("packets");
        c.bytes += get("bytes");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_per_model_rule_of_policy_and_profile_chains() {
        let rule = |chain: &str, comment: &str, packets: u64, bytes: u64| {
            serde_json::json!({"rule": {"family": "inet", "table": "calico", "chain": chain,
                "comment": comment, "expr": [{"match": {}}, {"counter": {"packets": packets, "bytes": bytes}}]}})
        };
        let listing = serde_json::json!({"nftables": [
            {"metainfo": {}},
            rule("np-in-shop/db", "shop/db ingress[0] #00112233445566ff", 3, 180),
            rule("np-in-shop/db", "shop/db ingress[0]", 1, 80),
            rule("np-in-shop/db", "shop/db ingress[1]", 0, 0),
            rule("pro-out-kns.shop", "profile kns.shop egress[0]", 7, 700),
            rule("wl-in-calia", "policy shop/db", 9, 900),
        ]});
        let counts = rule_counts(&listing.to_string()).unwrap();
        assert_eq!(
            counts[&("np-in-shop/db".into(), 0)],
            Count {
                packets: 4,
                bytes: 260
            }
        );
        assert_eq!(counts[&("np-in-shop/db".into(), 1)], Count::default());
        assert_eq!(counts[&("pro-out-kns.shop".into(), 0)].packets, 7);
        assert_eq!(counts.len(), 3, "endpoint chains are not policy rules");
        assert!(rule_counts("{").unwrap_err().contains("not JSON"));
        assert!(rule_counts("{}").unwrap_err().contains("nftables"));
    }
}
