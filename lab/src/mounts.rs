//! A node's mount namespace, planned (pure): which [`Step`]s make each of
//! its [`Mount`]s appear at its container path, and which mounts an overlay
//! must carry over ([`submounts`], from `/proc/self/mountinfo`).
//!
//! The scheme: `up` makes the lab's state directory a private bind mount of
//! itself (a mount namespace can only be persisted by a bind mount on a
//! non-shared mount) and, per node that needs one, a persistent namespace
//! `STATE/NODE/mnt` (`unshare --mount=… --propagation slave`: mounts made on
//! the host, e.g. new network namespaces, still reach it; none of its own
//! reach the host). In it, each mount is a bind of its source at its target.
//! A target the host lacks is never created on the host: its nearest
//! existing ancestor `A` gets an overlay (lower `A` itself, upper and work
//! on a tmpfs at `STATE/NODE/.mnt` mounted only in the node), built at a
//! scratch point, the mounts below `A` bound into it, and then moved onto
//! `A`; the missing directories and the target are made in it. Both the
//! tmpfs and the overlays live only in the node's namespace and go with it.
//! Below an earlier bind a path is its source's: a target missing there gets
//! an overlay too, never a write into the source. (Overlay options are
//! comma-separated: a state directory or ancestor whose path holds `,` or
//! `:` makes `mount` fail, naming the command.)

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The mount namespace file in a node's state directory.
pub const NS_FILE: &str = "mnt";

/// The directory in a node's state directory where its overlays' tmpfs goes.
pub const SCRATCH: &str = ".mnt";

/// A bind in a node's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears in the node (absolute).
    pub target: PathBuf,
    pub read_only: bool,
}

/// What a path on the host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
}

/// One action in the node's mount namespace, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A tmpfs at `at` holding the overlays' upper and work directories.
    Scratch { at: PathBuf },
    /// An overlay on the existing directory `at` (its own lower layer),
    /// mounted at `merged`, the mounts below `at` bound into it, then moved
    /// onto `at`.
    Overlay {
        at: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        merged: PathBuf,
    },
    /// A missing directory or empty file made (on an overlay).
    Create { path: PathBuf, kind: FileKind },
    /// `source` bound at `target`, read-only if asked.
    Bind {
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
}

/// The steps that make `mounts` appear in a namespace that starts as a copy
/// of the host's; `host` tells what a host path is (`None`: absent), and
/// `scratch` is the empty directory (in the node's state directory) where
/// overlays keep their layers. Refuses a source the host lacks.
pub fn steps(
    mounts: &[Mount],
    scratch: &Path,
    host: impl Fn(&Path) -> Option<FileKind>,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    // Paths made in the node (all on overlays), the overlaid directories not
    // covered by a later bind, the binds so far (target, source), and how
    // many overlays there are.
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    let mut overlaid: BTreeSet<PathBuf> = BTreeSet::new();
    let mut bound: Vec<(&Path, &Path)> = Vec::new();
    let mut layers = 0;
    for m in mounts {
        let kind = host(&m.source).ok_or_else(|| {
            format!(
                "bind source {} (for {}) does not exist",
                m.source.display(),
                m.target.display()
            )
        })?;
        // Whether `p` is there in the node: made, or on the host path it
        // shows (below the last bind covering it, the bind's source).
        let exists = |p: &Path| {
            made.contains(p)
                || host(&match bound.iter().rev().find(|(t, _)| p.starts_with(t)) {
                    Some((t, source)) => match p.strip_prefix(t) {
                        Ok(rel) if rel.as_os_str().is_empty() => source.to_path_buf(),
                        Ok(rel) => source.join(rel),
                        Err(_) => p.to_path_buf(),
                    },
                    None => p.to_path_buf(),
                })
                .is_some()
        };
        if !exists(&m.target) {
            let mut missing = vec![m.target.clone()];
            let mut at = m.target.parent();
            while let Some(a) = at.filter(|a| !exists(a)) {
                missing.push(a.to_path_buf());
                at = a.parent();
            }
            let at = at.unwrap_or(Path::new("/")).to_path_buf();
            // Only what this node made or overlaid may be written to: any
            // other directory is the host's (or a bind's source).
            if !made.contains(&at) && !overlaid.contains(&at) {
                if layers == 0 {
                    steps.push(Step::Scratch {
                        at: scratch.to_path_buf(),
                    });
                }
                let layer = scratch.join(layers.to_string());
                layers += 1;
                steps.push(Step::Overlay {
                    at: at.clone(),
                    upper: layer.join("upper"),
                    work: layer.join("work"),
                    merged: layer.join("merged"),
                });
                overlaid.insert(at);
            }
            for path in missing.into_iter().rev() {
                let kind = if path == m.target {
                    kind
                } else {
                    FileKind::Dir
                };
                made.insert(path.clone());
                steps.push(Step::Create { path, kind });
            }
        }
        // What the bind covers is its source's now, not ours to write.
        made.retain(|p| !p.starts_with(&m.target));
        overlaid.retain(|p| !p.starts_with(&m.target));
        bound.push((&m.target, &m.source));
        steps.push(Step::Bind {
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
        });
    }
    Ok(steps)
}

/// The mount points strictly below `dir` that are not below another one
/// (binding these recursively carries every mount below `dir`), in the
/// order of `mountinfo` (the text of `/proc/PID/mountinfo`).
pub fn submounts(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut tops: Vec<PathBuf> = Vec::new();
    for target in mount_points(mountinfo) {
        if target != dir && target.starts_with(dir) && !tops.iter().any(|t| target.starts_with(t)) {
            tops.push(target);
        }
    }
    tops
}

/// Every mount point in `mountinfo` at or below `dir`, deepest last mounted
/// first: the order to unmount them in.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mount_points(mountinfo)
        .filter(|t| t.starts_with(dir))
        .collect();
    found.reverse();
    found
}

/// The mount points of persisted mount namespaces (`nsfs` mounts of a
/// `mnt:[…]` namespace) in `mountinfo`.
pub fn mount_namespace_files(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let (root, point) = (fields.get(3)?, fields.get(4)?);
            (fields.get(sep + 1) == Some(&"nsfs") && root.starts_with("mnt:"))
                .then(|| unescape(point))
        })
        .collect()
}

/// The mount points (field 5) of `mountinfo`, in order.
fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
}

/// A mountinfo path, its `\ooo` escapes (space, tab, newline, backslash)
/// decoded.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}
