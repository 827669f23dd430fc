//! The netlink path: [`Netlink`], the default [`Dataplane`], programs each
//! update as ONE nf_tables batch built with libnftnl (`nftnl-sys`) and sent
//! in one `sendmsg`, filling what the `nftnl` 0.9 crate lacks (see
//! [`dataplane`](crate::dataplane)).
//!
//! ```text
//! Changes ──changes_batch──▶ Batch (begin, msgs…, end) ──send──▶ kernel ──acks──▶ Ok | Refused{what}
//!             objects::{SetSpec, ElemSpec, rule_exprs}      ffi (libnftnl)
//! ```
//!
//! An update is carried out in [`render_changes`](crate::render_changes)'s
//! order (new chains declared, new sets, element removals then additions,
//! flushes, deletions, recreations, new maps, then rules), so every reference
//! is valid at every step. Element changes of an interval set are sent as the
//! kernel holds them ([`element_delta`]): interval starts and ends, computed
//! from what the driver knows is programmed, so that a removal never names an
//! end marker the kernel does not have and touching intervals keep theirs.
//!
//! Cost: building and sending a batch is small next to what the kernel does
//! with it. An element-only update takes a few milliseconds at 125,000 rules;
//! any batch that adds a rule with a verdict makes the kernel validate the
//! whole table (every path from the base chains through the maps), tens of
//! milliseconds at that size (`cargo bench -p policy --bench change`).
//!
//! # Layout
//!
//! - [`objects`]: pure descriptions of sets, maps, elements and rule
//!   expressions, and the IR translated into them exactly as `nft -f` would.
//! - [`batch`]: the batch builder and the sender (socket buffers, one
//!   `sendmsg`, every acknowledgement read).
//! - `ffi`: owned libnftnl handles; the only `unsafe` besides the socket calls.

pub mod batch;
mod ffi;
pub mod objects;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nftnl_sys as sys;

use crate::dataplane::{Dataplane, DataplaneError, Nft};
use crate::diff::{Changes, ElementChanges};
use crate::ir::{Chain, ChainType, Hook, Ruleset, SetElement, TABLE};
use crate::stamp::Programmed;
use batch::{Batch, BatchError, Msg, Socket};
use ffi::Payload;
use objects::{ElemSpec, SetIds, SetSpec, Unsupported};

/// Elements per element message: far below [`ffi::MAX_MESSAGE`] for the
/// largest element (a v6 concatenated interval is about 100 bytes).
const ELEMENTS_PER_MESSAGE: usize = 256;

/// Why the netlink path failed. Nothing was committed in any case.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("rule {index} of chain {chain:?} has no netlink form: {reason}")]
    Unsupported {
        chain: String,
        index: usize,
        reason: Unsupported,
    },
    #[error("element changes for set {0:?}, which is not programmed")]
    UnknownSet(String),
    #[error("opening a netlink socket in {netns}: {source}")]
    Open {
        netns: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// Builds batches for the `inet calico` table.
#[derive(Debug)]
struct Builder {
    batch: Batch,
    ids: SetIds,
}

impl Builder {
    fn new() -> Self {
        // Sequence numbers only need to be unique per socket; the time keeps
        // them distinct across batches for anyone reading a capture.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Builder {
            batch: Batch::new(seq),
            ids: SetIds::default(),
        }
    }

    fn table(&mut self) {
        let mut t = ffi::Table::new();
        t.set_str(sys::NFTNL_TABLE_NAME, TABLE)
            .set_u32(sys::NFTNL_TABLE_FAMILY, u32::from(batch::FAMILY_INET));
        self.batch.push(
            Msg::NewTable,
            Payload::Table(&t),
            format!("table inet {TABLE}"),
        );
    }

    fn chain_object(name: &str, chain: Option<&Chain>) -> ffi::Chain {
        let mut c = ffi::Chain::new();
        c.set_str(sys::NFTNL_CHAIN_TABLE, TABLE)
            .set_str(sys::NFTNL_CHAIN_NAME, name)
            .set_u32(sys::NFTNL_CHAIN_FAMILY, u32::from(batch::FAMILY_INET));
        if let Some(base) = chain.and_then(|c| c.base) {
            let hook = match base.hook {
                Hook::Prerouting => 0,
                Hook::Input => 1,
                Hook::Forward => 2,
                Hook::Output => 3,
                Hook::Postrouting => 4,
            };
            let kind = match base.kind {
                ChainType::Filter => "filter",
                ChainType::Nat => "nat",
            };
            c.set_u32(sys::NFTNL_CHAIN_HOOKNUM, hook)
                .set_u32(sys::NFTNL_CHAIN_PRIO, base.priority.value() as u32)
                .set_str(sys::NFTNL_CHAIN_TYPE, kind)
                .set_u32(sys::NFTNL_CHAIN_POLICY, 1);
        }
        c
    }

    fn chain(&mut self, msg: Msg, name: &str, chain: Option<&Chain>) {
        let c = Self::chain_object(name, chain);
        let what = match msg {
            Msg::DelRule => format!("flush of chain {name}"),
            Msg::DelChain => format!("deletion of chain {name}"),
            _ => format!("chain {name}"),
        };
        let payload = if msg == Msg::DelRule {
            // A rule message naming only the chain flushes it.
            let mut r = ffi::Rule::new();
            r.set_str(sys::NFTNL_RULE_TABLE, TABLE)
                .set_str(sys::NFTNL_RULE_CHAIN, name)
                .set_u32(sys::NFTNL_RULE_FAMILY, u32::from(batch::FAMILY_INET));
            self.batch.push(msg, Payload::Rule(&r), what);
            return;
        } else {
            Payload::Chain(&c)
        };
        self.batch.push(msg, payload, what);
    }

    fn set(&mut self, spec: &SetSpec, elements: &[ElemSpec], what: &str) {
        let s = spec.build();
        self.batch
            .push(Msg::NewSet, Payload::Set(&s), what.to_string());
        self.elements(Msg::NewSetElem, spec, elements, what);
    }

    fn elements(&mut self, msg: Msg, spec: &SetSpec, elements: &[ElemSpec], what: &str) {
        for (i, chunk) in elements.chunks(ELEMENTS_PER_MESSAGE).enumerate() {
            let s = spec.build_elems(chunk);
            let verb = if msg == Msg::NewSetElem {
                "adding"
            } else {
                "removing"
            };
            self.batch.push(
                msg,
                Payload::Elems(&s),
                format!("{verb} elements {}.. of {what}", i * ELEMENTS_PER_MESSAGE),
            );
        }
    }

    fn delete_set(&mut self, name: &str, kind: &str) {
        let mut s = ffi::Set::new();
        s.set_str(sys::NFTNL_SET_TABLE, TABLE)
            .set_str(sys::NFTNL_SET_NAME, name)
            .set_u32(sys::NFTNL_SET_FAMILY, u32::from(batch::FAMILY_INET));
        self.batch.push(
            Msg::DelSet,
            Payload::Set(&s),
            format!("deletion of {kind} {name}"),
        );
    }

    fn rules(&mut self, name: &str, chain: &Chain) -> Result<(), NetlinkError> {
        let rendered: Vec<String> = chain.rules.iter().map(crate::render::render_rule).collect();
        let comments =
            crate::stamp::written_comments_with(chain, crate::stamp::hash_rendered(&rendered));
        for ((index, rule), (text, comment)) in chain
            .rules
            .iter()
            .enumerate()
            .zip(rendered.iter().zip(comments))
        {
            let (exprs, anon) = objects::rule_exprs(rule, &mut self.ids).map_err(|reason| {
                NetlinkError::Unsupported {
                    chain: name.to_string(),
                    index,
                    reason,
                }
            })?;
            let what = format!("rule {index} of chain {name} ({text})");
            for set in &anon {
                self.set(
                    &set.spec,
                    &set.elements,
                    &format!("anonymous set of {what}"),
                );
            }
            let mut r = ffi::Rule::new();
            r.set_str(sys::NFTNL_RULE_TABLE, TABLE)
                .set_str(sys::NFTNL_RULE_CHAIN, name)
                .set_u32(sys::NFTNL_RULE_FAMILY, u32::from(batch::FAMILY_INET));
            let udata = objects::rule_userdata(comment.as_deref());
            if !udata.is_empty() {
                r.set(sys::NFTNL_RULE_USERDATA, &udata);
            }
            for e in &exprs {
                r.add_expr(e.build());
            }
            self.batch.push(Msg::NewRule, Payload::Rule(&r), what);
        }
        Ok(())
    }
}

/// The kernel elements to remove from and add to `set` for `change`: the
/// difference between the set's elements as they were created (interval
/// starts and ends, see [`objects::set_elements`]) and as they will be, so
/// that every element removed is one the kernel holds, even where intervals
/// touch or the set begins at the bottom of the key space.
pub fn element_delta(
    set: &crate::ir::Set,
    change: &ElementChanges<SetElement>,
) -> (Vec<ElemSpec>, Vec<ElemSpec>) {
    let mut after = set.elements.clone();
    for e in &change.remove {
        after.remove(e);
    }
    after.extend(change.add.iter().copied());
    let before = objects::set_elements(&set.elements, true);
    let after = objects::set_elements(&after, true);
    // In the order nft sends them (by key, an interval's end before the next
    // one's start at the same key): the kernel checks overlaps element by
    // element.
    let only = |these: &[ElemSpec], those: &[ElemSpec]| -> Vec<ElemSpec> {
        let those: BTreeSet<&ElemSpec> = those.iter().collect();
        these
            .iter()
            .filter(|e| !those.contains(e))
            .cloned()
            .collect()
    };
    (only(&before, &after), only(&after, &before))
}

/// The changes to `current` (what the kernel holds) as one batch, in
/// [`render_changes`](crate::render_changes)'s order, so that every
/// reference is valid at every step.
pub fn changes_batch(current: &Ruleset, changes: &Changes) -> Result<Batch, NetlinkError> {
    let mut b = Builder::new();
    b.table();
    let new_set = |b: &mut Builder, name: &str, set: &crate::ir::Set| {
        let id = b.ids.allocate();
        let spec = SetSpec::of_set(name, set, id);
        b.set(
            &spec,
            &objects::set_elements(&set.elements, true),
            &format!("set {name}"),
        );
    };
    for (name, chain) in &changes.add_chains {
        if !changes.remove_chains.contains(name) {
            b.chain(Msg::NewChain, name, Some(chain));
        }
    }
    for (name, set) in &changes.add_sets {
        if !changes.remove_sets.contains(name) {
            new_set(&mut b, name, set);
        }
    }
    for (name, change) in &changes.set_elements {
        let set = current
            .sets
            .get(name)
            .ok_or_else(|| NetlinkError::UnknownSet(name.clone()))?;
        // Only the name matters to element messages; the key decides the layout.
        let spec = SetSpec::of_set(name, set, 0);
        let (remove, add) = element_delta(set, change);
        let what = format!("set {name}");
        b.elements(Msg::DelSetElem, &spec, &remove, &what);
        b.elements(Msg::NewSetElem, &spec, &add, &what);
    }
    for (name, change) in &changes.map_elements {
        let spec = SetSpec::of_map(name, &Default::default(), 0);
        let what = format!("map {name}");
        let removed = objects::map_elements(change.remove.iter().map(|(k, v)| (k, v)));
        let removed: Vec<ElemSpec> = removed
            .into_iter()
            .map(|e| ElemSpec { verdict: None, ..e })
            .collect();
        b.elements(Msg::DelSetElem, &spec, &removed, &what);
        let added = objects::map_elements(change.add.iter().map(|(k, v)| (k, v)));
        b.elements(Msg::NewSetElem, &spec, &added, &what);
    }
    for name in changes.replace_chains.keys().chain(&changes.remove_chains) {
        b.chain(Msg::DelRule, name, None);
    }
    for name in &changes.remove_maps {
        b.delete_set(name, "map");
    }
    for name in &changes.remove_chains {
        b.chain(Msg::DelChain, name, None);
    }
    for name in &changes.remove_sets {
        b.delete_set(name, "set");
    }
    for (name, chain) in &changes.add_chains {
        if changes.remove_chains.contains(name) {
            b.chain(Msg::NewChain, name, Some(chain));
        }
    }
    for (name, set) in &changes.add_sets {
        if changes.remove_sets.contains(name) {
            new_set(&mut b, name, set);
        }
    }
    for (name, map) in &changes.add_maps {
        let id = b.ids.allocate();
        let spec = SetSpec::of_map(name, map, id);
        b.set(
            &spec,
            &objects::map_elements(&map.elements),
            &format!("map {name}"),
        );
    }
    for (name, chain) in changes.add_chains.iter().chain(&changes.replace_chains) {
        b.rules(name, chain)?;
    }
    Ok(b.batch)
}

/// The netlink driver: each update is one libnftnl batch sent on one
/// `NETLINK_NETFILTER` socket, which lives in the network namespace the
/// driver was made for. Before its first update the driver reads our table
/// once through `nft -j` ([`Nft::read_table`]), adopting the chains that
/// already hold what it would program ([`stamp`](crate::stamp)); from then
/// on it tracks what it programmed and never reads the kernel again.
#[derive(Debug)]
pub struct Netlink {
    /// Where the socket is opened: `None` for the namespace of the thread
    /// that first uses the driver.
    netns: Option<(PathBuf, File)>,
    reader: Nft,
    /// The socket (opened on first use) and what the kernel holds (known
    /// after the first read). Held for the whole of an update, so updates
    /// from several threads go one after another.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    socket: Option<Socket>,
    programmed: Option<Programmed>,
}

impl Default for Netlink {
    fn default() -> Self {
        Netlink::new()
    }
}

impl Netlink {
    /// A driver for the network namespace of the thread that first uses it.
    pub fn new() -> Self {
        Netlink {
            netns: None,
            reader: Nft::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// A driver for the network namespace `netns` (a `/run/netns/NAME` or
    /// `/proc/PID/ns/net` file), whichever thread uses it; it reads the
    /// table there with `nsenter --net=NETNS nft`.
    pub fn in_netns(netns: impl AsRef<Path>) -> Result<Self, NetlinkError> {
        let path = netns.as_ref().to_path_buf();
        let open_error = |source| NetlinkError::Open {
            netns: path.display().to_string(),
            source,
        };
        let file = File::open(&path).map_err(open_error)?;
        let socket = Socket::open_in(&file).map_err(open_error)?;
        let arg = format!("--net={}", path.display());
        Ok(Netlink {
            netns: Some((path, file)),
            reader: Nft::with_command(move || {
                let mut cmd = std::process::Command::new("nsenter");
                cmd.args([arg.as_str(), "nft"]);
                cmd
            }),
            state: Mutex::new(State {
                socket: Some(socket),
                programmed: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent value behind:
        // `programmed` is only written after the kernel committed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads our table from the kernel, whatever the driver remembers.
    pub fn read_kernel(&self) -> Result<Ruleset, DataplaneError> {
        self.reader.read_kernel()
    }

    /// Carries out `changes` to `current` (what the kernel holds) in one
    /// batch, without touching what the driver remembers: for loading a
    /// ruleset whole (`current` empty) or for tests.
    pub fn send(&self, current: &Ruleset, changes: &Changes) -> Result<(), NetlinkError> {
        let mut state = self.state();
        self.send_locked(&mut state, current, changes)
    }

    fn send_locked(
        &self,
        state: &mut State,
        current: &Ruleset,
        changes: &Changes,
    ) -> Result<(), NetlinkError> {
        let batch = changes_batch(current, changes)?.finish();
        let socket = match state.socket.take() {
            Some(s) => s,
            None => match &self.netns {
                Some((_, file)) => Socket::open_in(file),
                None => Socket::open(),
            }
            .map_err(|source| NetlinkError::Open {
                netns: self.netns.as_ref().map_or_else(
                    || "this thread's network namespace".to_string(),
                    |(p, _)| p.display().to_string(),
                ),
                source,
            })?,
        };
        let sent = batch::send(&socket, &batch);
        state.socket = Some(socket);
        Ok(sent?)
    }
}

impl Dataplane for Netlink {
    fn read(&self) -> Result<Ruleset, DataplaneError> {
        let mut state = self.state();
        Ok(programmed(&mut state, &self.reader)?.ruleset.clone())
    }

    fn changes_to(&self, desired: &Ruleset) -> Result<Changes, DataplaneError> {
        let mut state = self.state();
        Ok(programmed(&mut state, &self.reader)?.changes_to(desired))
    }

    fn apply(&self, changes: &Changes) -> Result<(), DataplaneError> {
        let mut state = self.state();
        let mut current = match state.programmed.take() {
            Some(r) => r,
            None => self.reader.read_table()?,
        };
        let sent = self.send_locked(&mut state, &current.ruleset, changes);
        if sent.is_ok() {
            current.applied(changes);
        }
        state.programmed = Some(current);
        Ok(sent?)
    }
}

/// What the kernel holds: remembered, or read once.
fn programmed<'a>(
    state: &'a mut State,
    reader: &Nft,
) -> Result<&'a mut Programmed, DataplaneError> {
    if state.programmed.is_none() {
        state.programmed = Some(reader.read_table()?);
    }
    Ok(state.programmed.get_or_insert_with(Programmed::default))
}
