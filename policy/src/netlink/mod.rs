//! The netlink path: [`Netlink`], a [`Dataplane`] that programs each update
//! as ONE nf_tables batch built with libnftnl (`nftnl-sys`) and sent in one
//! `sendmsg`, filling what the `nftnl` 0.9 crate lacks (see
//! [`dataplane`](crate::dataplane)).
//!
//! ```text
//! Changes ──changes_batch──▶ Batch (begin, msgs…, end) ──send──▶ kernel ──acks──▶ Ok | Refused{what}
//!             objects::{SetSpec, ElemSpec, rule_exprs}      ffi (libnftnl)
//! ```
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

use std::sync::Mutex;

use nftnl_sys as sys;

use crate::dataplane::{Dataplane, DataplaneError, Nft};
use crate::diff::Changes;
use crate::ir::{Chain, Hook, Ruleset, TABLE};
use batch::{Batch, BatchError, Msg};
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
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Read(#[from] DataplaneError),
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
                Hook::Input => 1,
                Hook::Forward => 2,
                Hook::Output => 3,
            };
            c.set_u32(sys::NFTNL_CHAIN_HOOKNUM, hook)
                .set_u32(sys::NFTNL_CHAIN_PRIO, 0)
                .set_str(sys::NFTNL_CHAIN_TYPE, "filter")
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
        for (index, rule) in chain.rules.iter().enumerate() {
            let (exprs, anon) = objects::rule_exprs(rule, &mut self.ids).map_err(|reason| {
                NetlinkError::Unsupported {
                    chain: name.to_string(),
                    index,
                    reason,
                }
            })?;
            let what = format!("rule {index} of chain {name}");
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
            let udata = objects::rule_userdata(rule);
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

/// The changes as one batch, in [`render_changes`](crate::render_changes)'s
/// order, so that every reference is valid at every step.
pub fn changes_batch(changes: &Changes) -> Result<Batch, NetlinkError> {
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
        // Only the name matters to element messages; the key decides the layout.
        let spec = SetSpec {
            id: 0,
            ..SetSpec::of_set(
                name,
                &crate::ir::Set {
                    key: change.add.first().or(change.remove.first()).map_or(
                        crate::ir::SetKey::Net(crate::ir::Family::V4),
                        |e| match e {
                            crate::ir::SetElement::Net(n) => {
                                crate::ir::SetKey::Net(crate::ir::Family::of(n))
                            }
                            crate::ir::SetElement::NetPort(n, _) => {
                                crate::ir::SetKey::NetPort(crate::ir::Family::of(n))
                            }
                        },
                    ),
                    comment: String::new(),
                    elements: Default::default(),
                },
                0,
            )
        };
        let what = format!("set {name}");
        b.elements(
            Msg::DelSetElem,
            &spec,
            &objects::set_elements(&change.remove, false),
            &what,
        );
        b.elements(
            Msg::NewSetElem,
            &spec,
            &objects::set_elements(&change.add, false),
            &what,
        );
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

/// The netlink driver. Reads the kernel through `nft -j` ([`Nft::read_kernel`]);
/// writes through libnftnl, in the network namespace of the calling thread.
#[derive(Debug, Default)]
pub struct Netlink {
    reader: Nft,
    programmed: Mutex<Option<Ruleset>>,
}

impl Netlink {
    /// A driver for this thread's network namespace.
    pub fn new() -> Self {
        Netlink::default()
    }

    fn programmed(&self) -> std::sync::MutexGuard<'_, Option<Ruleset>> {
        self.programmed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out `changes` in one batch.
    pub fn send(&self, changes: &Changes) -> Result<(), NetlinkError> {
        let batch = changes_batch(changes)?;
        batch::send(&batch.finish())?;
        Ok(())
    }
}

impl Dataplane for Netlink {
    fn read(&self) -> Result<Ruleset, DataplaneError> {
        let mut programmed = self.programmed();
        if let Some(r) = programmed.as_ref() {
            return Ok(r.clone());
        }
        let kernel = self.reader.read_kernel()?;
        *programmed = Some(kernel.clone());
        Ok(kernel)
    }

    fn apply(&self, changes: &Changes) -> Result<(), DataplaneError> {
        let mut programmed = self.programmed();
        self.send(changes).map_err(|e| DataplaneError::Rejected {
            stderr: e.to_string(),
        })?;
        if let Some(r) = programmed.as_mut() {
            changes.apply_to(r);
        }
        Ok(())
    }
}
