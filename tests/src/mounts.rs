//! Mount points below a directory, read from `/proc/self/mountinfo`
//! ([`mounts_below`]), and undoing them ([`unmount_below`]): what the
//! harnesses that mount (Debian roots, container runtimes) do
//! before they remove their directories.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The mount points at or below `dir`, deepest first (from
/// `/proc/self/mountinfo`, whose paths escape space, tab, newline and `\`).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mountinfo(point)))
        .filter(|point| point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|oct| u8::from_str_radix(oct, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or below `dir`, deepest first; a busy mount is
/// detached (lazily), which is enough to remove the files below it safely.
pub fn unmount_below(dir: &Path) {
    for _ in 0..3 {
        let mounts = mounts_below(dir);
        if mounts.is_empty() {
            return;
        }
        for point in mounts {
            let _ = Command::new("umount").arg("-l").arg(&point).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/odd\04"), r"/odd\04");
    }

    #[test]
    fn the_root_file_system_is_a_mount_below_slash() {
        assert!(mounts_below(Path::new("/")).contains(&PathBuf::from("/")));
        assert!(mounts_below(Path::new("/testkit-no-such-dir")).is_empty());
    }
}
