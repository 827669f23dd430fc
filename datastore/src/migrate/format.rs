//! The export file, Calico's `calicoctl datastore migrate export` format,
//! read and written without I/O. Three sections, each ended by a line
//! `===` (the last by the end of the file):
//!
//! ```text
//! apiVersion: projectcalico.org/v3      v3 resources: one typed list per kind
//! items: [...]                          (IPPoolList, BGPPeerList, ...), `---`
//! kind: IPPoolList                      after each
//! ---
//! ===
//! {"apiVersion": ..., "kind": "ClusterInformation", ...}     the `default` one
//! ===
//! {"block_affinities": [{"Key": "/calico/ipam/v2/host/...", "Value": {...}, "TTL": 0}],
//!  "blocks": [...], "handles": [...], "config": {...}}        IPAM, as stored
//! ```
//!
//! Unlike Calico's, which moves etcd to Kubernetes and so leaves out what
//! Kubernetes regenerates, an export here holds every kind (workload
//! endpoints, profiles and Kubernetes policies too): both ends are this
//! project's stores and nothing rebuilds them. A file of Calico's reads
//! here all the same. IPAM values are kept as the JSON they were stored
//! as (fields this project does not model included), after checking each
//! decodes as the model and sits under a key that matches it.

use std::fmt;

use api::{ClusterInformation, Kind, Resource};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ipam::model::{
    self, AllocationBlock, BlockAffinity, CONFIG_KEY, IpamHandle, StoredIpamConfig,
};

/// The line that ends each section.
const SECTION_END: &str = "===";

/// One stored IPAM key and its value (Calico's `*KVPair`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvPair {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: Value,
    /// Nanoseconds (Go's `time.Duration`); keys here never expire, so 0.
    #[serde(rename = "TTL", default)]
    pub ttl: i64,
}

/// The IPAM section (Calico's `migrateIPAM`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamExport {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_affinities: Vec<KvPair>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<KvPair>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handles: Vec<KvPair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<KvPair>,
}

impl IpamExport {
    /// Every pair, affinities first (Calico's import order).
    pub fn pairs(&self) -> impl Iterator<Item = &KvPair> {
        self.block_affinities
            .iter()
            .chain(&self.blocks)
            .chain(&self.handles)
            .chain(&self.config)
    }

    /// Files a stored IPAM key under its list; `Err` for a key that is
    /// none of a block, an affinity, a handle or the configuration.
    pub fn add(&mut self, pair: KvPair) -> Result<(), String> {
        let key = pair.key.as_str();
        if model::parse_block_key(key).is_some() {
            self.blocks.push(pair);
        } else if model::parse_affinity_key(key).is_some() {
            self.block_affinities.push(pair);
        } else if model::parse_handle_key(key).is_some() {
            self.handles.push(pair);
        } else if key == CONFIG_KEY {
            self.config = Some(pair);
        } else {
            return Err(format!(
                "{key}: not an IPAM block, affinity, handle or config key"
            ));
        }
        Ok(())
    }

    /// Every problem with the section: a key of the wrong list, a value
    /// that does not decode or does not match its key, a time to live.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |list: &str, i: usize, pair: &KvPair, problem: Option<String>| {
            let at = format!("IPAM {list}[{i}] ({})", pair.key);
            if pair.ttl != 0 {
                out.push(format!(
                    "{at}: TTL: {} is not 0 (no key here expires)",
                    pair.ttl
                ));
            }
            if let Some(p) = problem {
                out.push(format!("{at}: {p}"));
            }
        };
        for (i, p) in self.blocks.iter().enumerate() {
            check("blocks", i, p, block_problem(p));
        }
        for (i, p) in self.block_affinities.iter().enumerate() {
            check("block_affinities", i, p, affinity_problem(p));
        }
        for (i, p) in self.handles.iter().enumerate() {
            check("handles", i, p, handle_problem(p));
        }
        if let Some(p) = &self.config {
            let problem = if p.key != CONFIG_KEY {
                Some(format!("Key: expected {CONFIG_KEY}"))
            } else {
                decode::<StoredIpamConfig>(&p.value).err()
            };
            check("config", 0, p, problem);
        }
        out
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| format!("Value: {e}"))
}

fn block_problem(pair: &KvPair) -> Option<String> {
    let Some(cidr) = model::parse_block_key(&pair.key) else {
        return Some("Key: not a block key (/calico/ipam/v2/assignment/ipvN/block/<cidr>)".into());
    };
    let block: AllocationBlock = match decode(&pair.value) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    if block.cidr != cidr {
        return Some(format!(
            "Value.cidr: {} differs from the key's {cidr}",
            block.cidr
        ));
    }
    block.check().err().map(|e| format!("Value: {e}"))
}

fn affinity_problem(pair: &KvPair) -> Option<String> {
    if model::parse_affinity_key(&pair.key).is_none() {
        return Some(
            "Key: not an affinity key (/calico/ipam/v2/host/<host>/ipvN/block/<cidr>)".into(),
        );
    }
    decode::<BlockAffinity>(&pair.value).err()
}

fn handle_problem(pair: &KvPair) -> Option<String> {
    if model::parse_handle_key(&pair.key).is_none() {
        return Some("Key: not a handle key (/calico/ipam/v2/handle/<id>)".into());
    }
    decode::<IpamHandle>(&pair.value).err()
}

/// A whole export: what a store holds, as moved between stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Every v3 resource but the ClusterInformation, without
    /// `resourceVersion`.
    pub resources: Vec<Resource>,
    /// The `default` ClusterInformation (`None` only in a file that has
    /// none; an export always writes it).
    pub cluster_info: Option<ClusterInformation>,
    pub ipam: IpamExport,
}

/// A file that is not an export, or whose content does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{summary}")]
pub struct FormatError {
    /// What was wrong, in one line.
    pub summary: String,
    /// Each problem, naming its section and document or item.
    pub problems: Vec<String>,
}

impl FormatError {
    fn one(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            problems: Vec::new(),
        }
    }
}

impl Export {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for kind in Kind::ALL {
            let items: Vec<Value> = self
                .resources
                .iter()
                .filter(|r| r.kind() == *kind)
                .map(Resource::to_value)
                .collect();
            if items.is_empty() {
                continue;
            }
            let list = serde_json::json!({
                "apiVersion": kind.api_version(),
                "kind": format!("{}List", kind.document_kind()),
                "items": items,
            });
            out.push_str(&serde_yaml::to_string(&list).expect("resources serialise to YAML"));
            out.push_str("---\n");
        }
        out.push_str(SECTION_END);
        out.push('\n');
        if let Some(ci) = &self.cluster_info {
            let value = Resource::ClusterInformation(ci.clone()).to_value();
            out.push_str(&pretty(&value));
        }
        out.push_str(SECTION_END);
        out.push('\n');
        out.push_str(&pretty(&self.ipam));
        out
    }

    /// Reads a file's text (`source` names it in errors), validating every
    /// resource as `apply` would and every IPAM value against its key.
    pub fn parse(source: &str, text: &str) -> Result<Export, FormatError> {
        let sections = split_sections(text);
        if sections.len() != 3 {
            return Err(FormatError::one(format!(
                "{source} is not a datastore export: expected 3 sections each ended by a line \
                 \"{SECTION_END}\", found {} (make it with `calicoctl datastore migrate export`)",
                sections.len()
            )));
        }
        let (resources_text, ci_text, ipam_text) = (&sections[0], &sections[1], &sections[2]);
        let mut problems = Vec::new();
        let mut resources = match api::parse_documents(source, &resources_text.text) {
            Ok(r) => r,
            Err(errs) => {
                problems.extend(errs.iter().map(ToString::to_string));
                Vec::new()
            }
        };
        let cluster_info = parse_cluster_info(source, ci_text, &mut problems);
        // A ClusterInformation among the resources counts as the section's.
        let mut listed = None;
        resources.retain(|r| match r {
            Resource::ClusterInformation(ci) => {
                listed = Some(ci.clone());
                false
            }
            _ => true,
        });
        let ipam = if ipam_text.text.trim().is_empty() {
            IpamExport::default()
        } else {
            match serde_json::from_str::<IpamExport>(&ipam_text.text) {
                Ok(ipam) => ipam,
                Err(e) => {
                    problems.push(format!(
                        "{source}: IPAM section (line {}): {e}",
                        ipam_text.first_line + e.line().saturating_sub(1)
                    ));
                    IpamExport::default()
                }
            }
        };
        problems.extend(
            ipam.problems()
                .into_iter()
                .map(|p| format!("{source}: {p}")),
        );
        if !problems.is_empty() {
            return Err(FormatError {
                summary: format!(
                    "{source}: {} in the export; nothing was imported",
                    if problems.len() == 1 {
                        "1 problem".to_string()
                    } else {
                        format!("{} problems", problems.len())
                    }
                ),
                problems,
            });
        }
        Ok(Export {
            resources,
            cluster_info: cluster_info.or(listed),
            ipam,
        })
    }
}

impl fmt::Display for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

fn pretty(value: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("export sections serialise to JSON");
    s.push('\n');
    s
}

/// One section's text and the file line it starts on (1-based).
struct Section {
    text: String,
    first_line: usize,
}

/// Splits at lines that are exactly `===`; the text after the last one is
/// the last section.
fn split_sections(text: &str) -> Vec<Section> {
    let mut sections = vec![Section {
        text: String::new(),
        first_line: 1,
    }];
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end_matches(['\n', '\r']) == SECTION_END {
            sections.push(Section {
                text: String::new(),
                first_line: n + 2,
            });
        } else {
            sections
                .last_mut()
                .expect("never empty")
                .text
                .push_str(line);
        }
    }
    sections
}

fn parse_cluster_info(
    source: &str,
    section: &Section,
    problems: &mut Vec<String>,
) -> Option<ClusterInformation> {
    if section.text.trim().is_empty() {
        return None;
    }
    let at = format!(
        "{source}: ClusterInformation section (line {})",
        section.first_line
    );
    let value: Value = match serde_json::from_str(&section.text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{at}: {e}"));
            return None;
        }
    };
    let resource = match Resource::from_value(value) {
        Ok(r) => r.with_defaults(),
        Err(e) => {
            problems.push(format!("{at}: {e}"));
            return None;
        }
    };
    if let Err(errs) = resource.validate() {
        problems.extend(errs.iter().map(|e| format!("{at}: {e}")));
        return None;
    }
    match resource {
        Resource::ClusterInformation(mut ci) => {
            ci.metadata.resource_version = None;
            ci.metadata.uid = None;
            ci.metadata.creation_timestamp = None;
            Some(ci)
        }
        other => {
            problems.push(format!(
                "{at}: kind is {:?}, expected \"ClusterInformation\"",
                other.kind().name()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{ClusterInformationSpec, IPPool, IPPoolSpec, ObjectMeta};

    fn export() -> Export {
        let mut ipam = IpamExport::default();
        let cidr: ipnet::IpNet = "10.0.0.0/30".parse().unwrap();
        let block = AllocationBlock::new(cidr, Some("h1"));
        for pair in [
            KvPair {
                key: model::block_key(cidr),
                value: serde_json::to_value(&block).unwrap(),
                ttl: 0,
            },
            KvPair {
                key: model::affinity_key("h1", cidr),
                value: serde_json::to_value(BlockAffinity::confirmed()).unwrap(),
                ttl: 0,
            },
        ] {
            ipam.add(pair).unwrap();
        }
        Export {
            resources: vec![
                Resource::IPPool(IPPool::new(
                    ObjectMeta::named("p"),
                    IPPoolSpec::new(api::Cidr("10.0.0.0/16".parse().unwrap())),
                ))
                .with_defaults(),
            ],
            cluster_info: Some(ClusterInformation::new(
                ObjectMeta::named("default"),
                ClusterInformationSpec {
                    cluster_guid: "abc".into(),
                    datastore_ready: Some(false),
                    ..Default::default()
                },
            )),
            ipam,
        }
    }

    #[test]
    fn an_export_reads_back_as_written() {
        let e = export();
        let text = e.render();
        assert!(text.contains("kind: IPPoolList"), "{text}");
        assert_eq!(text.matches("\n===\n").count(), 2, "{text}");
        assert_eq!(Export::parse("f", &text).unwrap(), e);
    }

    #[test]
    fn a_file_without_three_sections_is_not_an_export() {
        let err = Export::parse("f", "kind: IPPool\n").unwrap_err();
        assert!(err.summary.contains("expected 3 sections"), "{err}");
        assert!(err.summary.contains("found 1"), "{err}");
    }

    #[test]
    fn every_bad_part_is_named_with_its_section() {
        let mut e = export();
        e.ipam.blocks[0].key = model::block_key("10.0.0.4/30".parse().unwrap());
        e.ipam.block_affinities[0].ttl = 5;
        let text = e
            .render()
            .replace("10.0.0.0/16", "10.0.0.0/33")
            .replace("\"clusterGUID\"", "\"clusterGuid\"");
        let err = Export::parse("f.txt", &text).unwrap_err();
        let all = err.problems.join("\n");
        assert_eq!(err.problems.len(), 4, "{all}");
        assert!(all.contains("spec.cidr"), "{all}");
        assert!(all.contains("ClusterInformation section (line"), "{all}");
        assert!(all.contains("clusterGuid"), "{all}");
        assert!(all.contains("IPAM blocks[0]"), "{all}");
        assert!(all.contains("differs from the key's 10.0.0.4/30"), "{all}");
        assert!(all.contains("IPAM block_affinities[0]"), "{all}");
        assert!(all.contains("TTL: 5"), "{all}");
    }

    #[test]
    fn a_key_of_no_ipam_list_is_refused() {
        let mut ipam = IpamExport::default();
        let err = ipam
            .add(KvPair {
                key: "/calico/ipam/v2/other".into(),
                value: Value::Null,
                ttl: 0,
            })
            .unwrap_err();
        assert!(err.contains("/calico/ipam/v2/other"), "{err}");
    }

    #[test]
    fn calico_s_empty_sections_read_as_nothing() {
        let e = Export::parse("f", "===\n===\n{}\n").unwrap();
        assert!(e.resources.is_empty() && e.cluster_info.is_none());
        assert_eq!(e.ipam, IpamExport::default());
    }
}
