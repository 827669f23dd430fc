#!/usr/bin/env bash
# A clean Debian 12 (bookworm) root file system, as a fresh minimal machine
# has it: debootstrap's minbase variant from Debian's mirror, nothing else.
#   scripts/debian-root.sh DIR   make DIR (which must not exist or be empty)
# Used by scripts/fresh-machine.sh and by the package tests. DEBIAN_MIRROR
# overrides the mirror (default http://deb.debian.org/debian). Needs root and
# debootstrap (scripts/packages.sh installs it).
set -euo pipefail

dir=${1:?usage: $0 DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "$dir exists and is not empty" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
mkdir -p "$dir"
log=$(mktemp)
if ! debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$log" 2>&1; then
  tail -20 "$log" >&2
  rm -f "$log"
  echo "debootstrap into $dir failed" >&2
  exit 1
fi
rm -f "$log"
# The security and updates suites, as Debian's installer writes them.
cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
