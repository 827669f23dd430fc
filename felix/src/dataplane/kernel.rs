//! What the drivers read alike from the kernel (its links, by name), the
//! netlink error codes they tolerate, and [`DataplaneError`].

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

/// Whatever stopped a kernel driver, naming the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{netns}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a thread working in {netns} ended without an answer")]
    Thread { netns: String },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}`: {detail}")]
    Conntrack { command: String, detail: String },
    #[error("device {device}: {reason}")]
    Device { device: String, reason: String },
    #[error("route {route}: {reason}")]
    Route { route: String, reason: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<DataplaneError>),
}

impl DataplaneError {
    pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Self {
        let what = what.into();
        move |source| DataplaneError::Netlink { what, source }
    }

    /// `Ok` for no errors, the one error, or [`DataplaneError::Several`].
    pub(crate) fn from_all(mut errors: Vec<DataplaneError>) -> Result<(), DataplaneError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(DataplaneError::Several(errors)),
        }
    }
}

/// A link as the drivers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub up: bool,
    /// The whole message, for drivers that read more (VXLAN).
    pub message: LinkMessage,
}

impl Link {
    /// The link a message describes, and its name (`None` without one).
    fn of(message: LinkMessage) -> Option<(String, Link)> {
        let name = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })?;
        let link = Link {
            index: message.header.index,
            up: message.header.flags.contains(LinkFlags::Up),
            message,
        };
        Some((name, link))
    }
}

/// The namespace's links by name: one dump.
///
/// A dump costs the kernel more than its links: for each veth it looks up
/// the id of the peer's namespace among all the namespaces it knows, so on
/// a host of N workloads (N veths, N namespaces) a dump grows as N². A
/// driver that needs a few links asks for them by name ([`link`]) and
/// dumps only to resynchronise.
pub async fn links(handle: &rtnetlink::Handle) -> Result<BTreeMap<String, Link>, DataplaneError> {
    let mut out = BTreeMap::new();
    let mut dump = handle.link().get().execute();
    while let Some(message) = dump
        .try_next()
        .await
        .map_err(DataplaneError::netlink("reading links"))?
    {
        out.extend(Link::of(message));
    }
    Ok(out)
}

/// The link named `name`, `None` when there is none.
pub async fn link(handle: &rtnetlink::Handle, name: &str) -> Result<Option<Link>, DataplaneError> {
    let mut get = handle.link().get().match_name(name.to_owned()).execute();
    match get.try_next().await {
        Ok(Some(message)) => Ok(Link::of(message).map(|(_, link)| link)),
        Ok(None) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(DataplaneError::Netlink {
            what: format!("reading link {name}"),
            source,
        }),
    }
}

/// The links of `names` that exist: by name, one request each, when they
/// are few; one dump when they are many (past [`DUMP_PAST`]).
pub async fn links_named<'a>(
    handle: &rtnetlink::Handle,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, Link>, DataplaneError> {
    let names: BTreeSet<&str> = names.into_iter().collect();
    if names.len() > DUMP_PAST {
        let mut all = links(handle).await?;
        all.retain(|name, _| names.contains(name.as_str()));
        return Ok(all);
    }
    let mut out = BTreeMap::new();
    for name in names {
        if let Some(link) = link(handle, name).await? {
            out.insert(name.to_owned(), link);
        }
    }
    Ok(out)
}

/// Past this many links asked for, [`links_named`] dumps them all.
pub const DUMP_PAST: usize = 32;

/// Whether a netlink error says the object is not there (ENOENT, ESRCH,
/// ENODEV): deleting it then succeeds.
pub fn is_not_found(e: &rtnetlink::Error) -> bool {
    errno(e).is_some_and(|n| matches!(n, libc::ENOENT | libc::ESRCH | libc::ENODEV))
}

/// The errno of a netlink error answer.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(ErrorMessage { code, .. }) => code.map(|c| -c.get()),
        _ => None,
    }
}

/// Sets link `index` up.
pub async fn set_up(
    handle: &rtnetlink::Handle,
    index: u32,
    name: &str,
) -> Result<(), DataplaneError> {
    let message = rtnetlink::LinkUnspec::new_with_index(index).up().build();
    handle
        .link()
        .set(message)
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!("setting {name} up")))
}
