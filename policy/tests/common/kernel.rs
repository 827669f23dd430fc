//! Kernel-side helpers shared by the dataplane and netlink tests: both
//! drivers made for a namespace, `nft list` output normalised for comparison,
//! loading nft text fresh, and the handles of every chain and rule.

use policy::netlink::Netlink;
use policy::{Dataplane, Ruleset, render};
use testkit::Netns;

use super::lab::nft_in;

/// The two drivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `nft -f -` per update (the text path).
    Nft,
    /// One libnftnl batch per update (the default).
    Netlink,
}

impl Driver {
    pub const BOTH: [Driver; 2] = [Driver::Nft, Driver::Netlink];

    /// A fresh driver of this kind programming `ns`.
    pub fn make(self, ns: &Netns) -> Box<dyn Dataplane> {
        match self {
            Driver::Nft => Box::new(nft_in(ns)),
            Driver::Netlink => Box::new(Netlink::in_netns(ns.path()).unwrap()),
        }
    }

    /// The other driver.
    pub fn other(self) -> Driver {
        match self {
            Driver::Nft => Driver::Netlink,
            Driver::Netlink => Driver::Nft,
        }
    }
}

/// `nft list table inet calico` in `ns`, handles dropped.
pub fn listing(ns: &Netns) -> String {
    let out = ns.exec("nft", ["list", "table", "inet", "calico"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(" # handle").next().unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`listing`] with its sets, maps and chains sorted by name and the
/// elements of each sorted: the kernel lists objects (and the elements of
/// concatenated sets) in the order they were added, which differs between a
/// table built update by update and one loaded at once.
pub fn sorted_listing(ns: &Netns) -> String {
    let text = listing(ns);
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        let top = line.starts_with('\t') && !line.starts_with("\t\t") && line.ends_with('{');
        match blocks.last_mut() {
            Some(block) if !top && line.starts_with('\t') => {
                block.push('\n');
                block.push_str(line);
            }
            _ if top => blocks.push(line.to_string()),
            _ => {}
        }
    }
    let mut blocks: Vec<String> = blocks.iter().map(|b| sort_elements(b)).collect();
    blocks.sort();
    blocks.join("\n")
}

/// A set or map block with the items of its `elements = { .. }` sorted, on one line.
fn sort_elements(block: &str) -> String {
    const OPEN: &str = "elements = {";
    let Some(start) = block.find(OPEN) else {
        return block.to_string();
    };
    let rest = &block[start + OPEN.len()..];
    let end = rest.find('}').expect("elements end with }");
    let mut items: Vec<&str> = rest[..end]
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    items.sort_unstable();
    format!(
        "{}{OPEN} {} }}{}",
        &block[..start],
        items.join(", "),
        &rest[end + 1..]
    )
}

/// Loads nft text into `ns` with `nft -f`.
pub fn load_nft(ns: &Netns, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ruleset.nft");
    std::fs::write(&file, text).unwrap();
    ns.exec("nft", [std::ffi::OsStr::new("-f"), file.as_os_str()])
        .unwrap();
}

/// The sorted listing of `ruleset` loaded fresh (rendered, `nft -f`) into a
/// namespace of its own.
pub fn fresh_listing(ruleset: &Ruleset) -> String {
    let ns = Netns::new("polf").unwrap();
    load_nft(&ns, &render(ruleset));
    sorted_listing(&ns)
}

/// The first lines where two listings differ, for a failure message.
pub fn listing_diff(want: &str, got: &str) -> String {
    let mut out: Vec<String> = want
        .lines()
        .zip(got.lines())
        .filter(|(a, b)| a != b)
        .take(8)
        .map(|(a, b)| format!("want: {a}\ngot:  {b}"))
        .collect();
    let (w, g) = (want.lines().count(), got.lines().count());
    if w != g {
        out.push(format!("{w} lines wanted, {g} listed"));
    }
    out.join("\n")
}

/// (chain name, chain handle, rule handles) of every chain, from `nft -j`.
pub fn handles(ns: &Netns) -> Vec<(String, u64, Vec<u64>)> {
    let out = ns
        .exec("nft", ["-j", "list", "table", "inet", "calico"])
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut chains: Vec<(String, u64, Vec<u64>)> = Vec::new();
    for o in doc["nftables"].as_array().unwrap() {
        if let Some(c) = o.get("chain") {
            chains.push((
                c["name"].as_str().unwrap().into(),
                c["handle"].as_u64().unwrap(),
                Vec::new(),
            ));
        } else if let Some(r) = o.get("rule") {
            let chain = r["chain"].as_str().unwrap();
            let entry = chains.iter_mut().find(|c| c.0 == chain).unwrap();
            entry.2.push(r["handle"].as_u64().unwrap());
        }
    }
    chains.sort();
    chains
}

/// (chain name, rule handle, packets counted) of every rule, from `nft -j`.
pub fn rule_counters(ns: &Netns) -> Vec<(String, u64, u64)> {
    let out = ns
        .exec("nft", ["-j", "list", "table", "inet", "calico"])
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rules: Vec<(String, u64, u64)> = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| {
            let packets = r["expr"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|e| e["counter"]["packets"].as_u64())
                .expect("every rule counts");
            let chain = r["chain"].as_str().unwrap().to_string();
            (chain, r["handle"].as_u64().unwrap(), packets)
        })
        .collect();
    rules.sort();
    rules
}

/// Each test once per driver (a test file's `fn NAME(Driver)`): `through_nft::NAME` and `through_netlink::NAME`.
#[allow(unused_macros, reason = "each test binary uses its own part")]
macro_rules! through_both_drivers {
    ($($name:ident),* $(,)?) => {
        mod through_nft {
            $(#[test] fn $name() { super::$name(super::Driver::Nft) })*
        }
        mod through_netlink {
            $(#[test] fn $name() { super::$name(super::Driver::Netlink) })*
        }
    };
}
#[allow(unused_imports, reason = "each test binary uses its own part")]
pub(crate) use through_both_drivers;
