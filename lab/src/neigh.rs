//! The kernel's neighbour table is one for the whole machine: every network
//! namespace's ARP and NDP entries count against the same
//! `net.ipv{4,6}.neigh.default.gc_thresh{1,2,3}` (1024 entries at most by
//! default). A lab of a few dozen meshed hosts fills it, and then fails
//! silently: ping says ENOBUFS, dmesg "neighbor table overflow", and BGP
//! sessions die on their hold timers one after another.
//!
//! So `up` sizes the table for the lab first:
//!
//! ```text
//!   plan ──entries()──▶ need (pure: each L2 segment of k ends may hold
//!                        k·(k−1) entries; each felix host its workloads')
//!   need + the other labs' ──thresholds()──▶ raise, or leave as it is (pure)
//!   RECORD (/run/calico-lab.neigh.json, under a lock): the values found
//!   before any lab raised them, what we wrote, each lab's need
//! ```
//!
//! `down` takes the lab's need out again and, with the last lab, puts the
//! values found back (unless someone else changed them meanwhile). A table
//! that cannot be raised (no root, a read-only `/proc/sys`) refuses `up`,
//! naming the sysctl and the value it needs. `/run` is cleared at boot, as
//! the sysctls are, so the record never outlives what it describes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::plan::{Plan, Role};
use crate::state::State;

/// The machine-wide record (see the module documentation).
pub const RECORD: &str = "/run/calico-lab.neigh.json";

/// Entries allowed for each felix host's workloads: the host's entry for
/// each workload on its `cali…` veth and the workload's for 169.254.1.1.
pub const WORKLOAD_ENTRIES: u64 = 2 * 32;

/// The three thresholds of one family's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Below it the kernel never collects entries.
    pub gc_thresh1: u64,
    /// Above it for five seconds, it collects unused entries.
    pub gc_thresh2: u64,
    /// The hard maximum: past it a new neighbour fails (ENOBUFS).
    pub gc_thresh3: u64,
}

/// The families whose tables are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    fn dir(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// `net.ipv4.neigh.default.gc_threshN`.
    pub fn sysctl(self, n: u8) -> String {
        format!("net.{}.neigh.default.gc_thresh{n}", self.dir())
    }
}

/// The neighbour entries a lab may hold in each family's table: every pair
/// of link ends on one L2 segment (a veth pair, or the ports of bridges
/// joined by links) may resolve each other, and each felix host holds
/// [`WORKLOAD_ENTRIES`] for its workloads. Routers across segments add none.
pub fn entries(plan: &Plan) -> u64 {
    let bridges: BTreeSet<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.role == Role::Bridge)
        .map(|n| n.name.as_str())
        .collect();
    // Bridges joined by a link are one segment: union-find over them.
    let mut parent: BTreeMap<&str, &str> = bridges.iter().map(|&b| (b, b)).collect();
    fn root<'a>(parent: &BTreeMap<&'a str, &'a str>, mut at: &'a str) -> &'a str {
        while parent[at] != at {
            at = parent[at];
        }
        at
    }
    let is_bridge = |node: &str| bridges.contains(node);
    for link in &plan.links {
        if is_bridge(&link.a.node) && is_bridge(&link.b.node) {
            let (a, b) = (root(&parent, &link.a.node), root(&parent, &link.b.node));
            if a != b {
                parent.insert(a, b);
            }
        }
    }
    let mut ports: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pairs = 0u64;
    for link in &plan.links {
        match (is_bridge(&link.a.node), is_bridge(&link.b.node)) {
            (false, false) => pairs += 1,
            (true, false) => *ports.entry(root(&parent, &link.a.node)).or_default() += 1,
            (false, true) => *ports.entry(root(&parent, &link.b.node)).or_default() += 1,
            (true, true) => {}
        }
    }
    let felix = plan.nodes.iter().filter(|n| n.role == Role::Felix).count() as u64;
    2 * pairs
        + ports.values().map(|k| k * k.saturating_sub(1)).sum::<u64>()
        + WORKLOAD_ENTRIES * felix
}

/// The thresholds for labs needing `need` entries in all, given the values
/// found before any lab raised them; `None` when those suffice (the labs
/// take at most half of the hard maximum, leaving the rest of the machine
/// its room). Raised, the labs get their need on top of what was there:
/// entries below `need` are never collected, and the hard maximum leaves
/// twice the need for entries that come and go.
pub fn thresholds(original: Thresholds, need: u64) -> Option<Thresholds> {
    if need <= original.gc_thresh3 / 2 {
        return None;
    }
    Some(Thresholds {
        gc_thresh1: original.gc_thresh1.max(need),
        gc_thresh2: original.gc_thresh2 + need,
        gc_thresh3: original.gc_thresh3 + 2 * need,
    })
}

/// What the record holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Each family's values before the first lab raised them.
    #[serde(default)]
    pub original: BTreeMap<Family, Thresholds>,
    /// What we wrote last, per family (absent: nothing written).
    #[serde(default)]
    pub set: BTreeMap<Family, Thresholds>,
    /// Each lab up (its state directory) and its need.
    #[serde(default)]
    pub labs: BTreeMap<PathBuf, u64>,
}

/// What changing the record asks of the sysctls, per family (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keep,
    Write(Thresholds),
}

impl Record {
    fn need(&self) -> u64 {
        self.labs.values().sum()
    }

    /// The change for `family` whose values are `current` now, recording
    /// what is written. With no lab left, the values found go back, unless
    /// someone changed ours meanwhile (then theirs stay).
    pub fn settle(&mut self, family: Family, current: Thresholds) -> Change {
        let original = *self.original.entry(family).or_insert(current);
        let ours = self.set.get(&family).copied();
        if ours.is_some_and(|ours| ours != current) {
            // Changed by someone else: theirs is the new base.
            self.original.insert(family, current);
            self.set.remove(&family);
            return self.settle(family, current);
        }
        let want = thresholds(original, self.need()).or(ours.map(|_| original));
        match want {
            Some(t) if t != current => {
                if t == original {
                    self.set.remove(&family);
                } else {
                    self.set.insert(family, t);
                }
                Change::Write(t)
            }
            _ => Change::Keep,
        }
    }
}

/// Where the sysctls live (`/proc/sys`).
const PROC_SYS: &str = "/proc/sys";

fn path(family: Family, n: u8) -> PathBuf {
    Path::new(PROC_SYS).join(family.sysctl(n).replace('.', "/"))
}

fn read(family: Family) -> Result<Option<Thresholds>, RunError> {
    let mut v = [0u64; 3];
    for (i, slot) in v.iter_mut().enumerate() {
        let p = path(family, i as u8 + 1);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            // IPv6 disabled: no table to size.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RunError::io(format!("reading {}", p.display()), e)),
        };
        *slot = text.trim().parse().map_err(|_| {
            RunError::io(
                format!("reading {}", p.display()),
                std::io::Error::other(format!("not a number: {:?}", text.trim())),
            )
        })?;
    }
    Ok(Some(Thresholds {
        gc_thresh1: v[0],
        gc_thresh2: v[1],
        gc_thresh3: v[2],
    }))
}

/// Writes `t` over `now`, the values read just before.
fn write(
    family: Family,
    now: Thresholds,
    t: Thresholds,
    lab: &str,
    need: u64,
) -> Result<(), RunError> {
    // Raising, the maximum goes first; lowering, last: the kernel keeps
    // nothing in order, but a reader never sees gc_thresh2 above gc_thresh3.
    let mut order = [(3, t.gc_thresh3), (2, t.gc_thresh2), (1, t.gc_thresh1)];
    if t.gc_thresh3 < now.gc_thresh3 {
        order.reverse();
    }
    for (n, value) in order {
        let p = path(family, n);
        std::fs::write(&p, format!("{value}\n")).map_err(|e| RunError::NeighbourTable {
            lab: lab.to_string(),
            need,
            sysctl: family.sysctl(n),
            value,
            source: e,
        })?;
    }
    Ok(())
}

/// The record as it stands, read under its lock (a lab going up or down
/// rewrites it in place); `None` when there is none.
pub fn read_record() -> Result<Option<Record>, RunError> {
    let ctx = |what: &str| format!("{what} {RECORD}");
    let file = match File::open(RECORD) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RunError::io(ctx("opening"), e)),
    };
    let mut file = Flock::lock(file, FlockArg::LockShared)
        .map_err(|(_, e)| RunError::io(ctx("locking"), e.into()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| RunError::io(ctx("reading"), e))?;
    parse_record(&text)
}

/// The record in `text`; `None` when it is empty (just created).
fn parse_record(text: &str) -> Result<Option<Record>, RunError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| RunError::State {
            path: RECORD.into(),
            message: e.to_string(),
        })
}

/// Registers (`need: Some`) or removes (`None`) the lab whose state
/// directory is `state_dir`, and sets the thresholds for the labs recorded.
/// Labs whose state file is gone (removed without `down`) are dropped.
fn update(state_dir: &Path, lab: &str, need: Option<u64>) -> Result<(), RunError> {
    let ctx = |what: &str| format!("{what} {RECORD}");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(RECORD)
        .map_err(|e| RunError::io(ctx("opening"), e))?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| RunError::io(ctx("locking"), e.into()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| RunError::io(ctx("reading"), e))?;
    let mut record = parse_record(&text)?.unwrap_or_default();
    record
        .labs
        .retain(|dir, _| dir == state_dir || State::path(dir).exists());
    match need {
        Some(n) => record.labs.insert(state_dir.to_path_buf(), n),
        None => record.labs.remove(state_dir),
    };
    let result = apply(&mut record, lab);
    if result.is_err() && need.is_some() {
        // Refused: the lab is not recorded, and what was written for it
        // goes back.
        record.labs.remove(state_dir);
        if let Err(undo) = apply(&mut record, lab) {
            eprintln!("calico-lab: restoring the neighbour table: {undo}");
        }
    }
    save(&mut file, &record)?;
    if record.labs.is_empty() && record.set.is_empty() {
        let _ = std::fs::remove_file(RECORD);
    }
    result
}

/// Writes each family's thresholds for the labs in `record`, recording
/// what was written; the first failure, after trying every family.
fn apply(record: &mut Record, lab: &str) -> Result<(), RunError> {
    let mut failed = None;
    for family in Family::ALL {
        let Some(current) = read(family)? else {
            continue;
        };
        let mut next = record.clone();
        if let Change::Write(t) = next.settle(family, current)
            && let Err(e) = write(family, current, t, lab, next.need())
        {
            failed.get_or_insert(e);
            continue;
        }
        *record = next;
    }
    failed.map_or(Ok(()), Err)
}

fn save(file: &mut File, record: &Record) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(record).expect("a record serialises");
    let ctx = || format!("writing {RECORD}");
    file.set_len(0).map_err(|e| RunError::io(ctx(), e))?;
    file.rewind().map_err(|e| RunError::io(ctx(), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| RunError::io(ctx(), e))
}

/// Sizes the neighbour tables for `plan` (see the module documentation).
pub fn reserve(plan: &Plan) -> Result<(), RunError> {
    update(&plan.state_dir, &plan.lab, Some(entries(plan)))
}

/// Takes the lab at `state_dir` out and resizes the tables for the rest.
pub fn release(state_dir: &Path, lab: &str) -> Result<(), RunError> {
    update(state_dir, lab, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Thresholds = Thresholds {
        gc_thresh1: 128,
        gc_thresh2: 512,
        gc_thresh3: 1024,
    };

    #[test]
    fn a_segment_of_k_ends_may_hold_k_times_k_minus_one_entries() {
        // Bridges s1 and s2 joined: one segment of a, b, c; the pair a-d;
        // felix host f on s1 too, with its workloads' allowance.
        let text = r#"
name: t
topology:
  nodes:
    s1: {kind: bridge}
    s2: {kind: bridge}
    a: {kind: linux}
    b: {kind: linux}
    c: {kind: linux}
    d: {kind: linux}
    f: {kind: linux, labels: {calico-rs.role: felix}}
  links:
    - endpoints: ["s1:p1", "s2:p1"]
    - endpoints: ["a:eth1", "s1:p2"]
    - endpoints: ["b:eth1", "s2:p2"]
    - endpoints: ["s2:p3", "c:eth1"]
    - endpoints: ["f:eth1", "s1:p3"]
    - endpoints: ["a:eth2", "d:eth1"]
"#;
        let settings = crate::Settings {
            state_root: "/run/calico-lab".into(),
            file_dir: "/labs".into(),
            name: None,
            felix: "/usr/bin/felix".into(),
        };
        let plan = crate::plan(&crate::parse(text).unwrap(), text, &settings).unwrap();
        assert_eq!(entries(&plan), 4 * 3 + 2 + WORKLOAD_ENTRIES);
    }

    #[test]
    fn a_small_need_changes_nothing_and_a_big_one_raises_all_three() {
        assert_eq!(thresholds(DEFAULT, 512), None);
        assert_eq!(
            thresholds(DEFAULT, 2000),
            Some(Thresholds {
                gc_thresh1: 2000,
                gc_thresh2: 2512,
                gc_thresh3: 5024,
            })
        );
    }

    #[test]
    fn the_last_lab_down_puts_the_values_found_back() {
        let mut r = Record::default();
        r.labs.insert("/a".into(), 2000);
        let Change::Write(raised) = r.settle(Family::Ipv4, DEFAULT) else {
            panic!("not raised");
        };
        assert_eq!(raised.gc_thresh3, 5024);
        // A second lab: raised for both.
        r.labs.insert("/b".into(), 1000);
        assert_eq!(
            r.settle(Family::Ipv4, raised),
            Change::Write(thresholds(DEFAULT, 3000).unwrap())
        );
        let now = thresholds(DEFAULT, 3000).unwrap();
        r.labs.remove(Path::new("/a"));
        assert_eq!(
            r.settle(Family::Ipv4, now),
            Change::Write(thresholds(DEFAULT, 1000).unwrap())
        );
        r.labs.remove(Path::new("/b"));
        assert_eq!(
            r.settle(Family::Ipv4, thresholds(DEFAULT, 1000).unwrap()),
            Change::Write(DEFAULT)
        );
        assert!(r.set.is_empty());
        // Nothing left to do.
        assert_eq!(r.settle(Family::Ipv4, DEFAULT), Change::Keep);
    }

    #[test]
    fn values_changed_by_someone_else_are_left_as_they_are() {
        let mut r = Record::default();
        r.labs.insert("/a".into(), 2000);
        assert!(matches!(r.settle(Family::Ipv4, DEFAULT), Change::Write(_)));
        let theirs = Thresholds {
            gc_thresh1: 100_000,
            gc_thresh2: 200_000,
            gc_thresh3: 400_000,
        };
        // Their values hold the lab: kept, and kept after it goes.
        assert_eq!(r.settle(Family::Ipv4, theirs), Change::Keep);
        r.labs.clear();
        assert_eq!(r.settle(Family::Ipv4, theirs), Change::Keep);
        assert!(r.set.is_empty());
    }
}
