#!/usr/bin/env bash
# Builds the Debian packages from packaging/deb/: calico-rs (stripped
# binaries, conffiles, the calico-felix unit, maintainer scripts) and
# calico-rs-dbgsym (the binaries' debug information, by build ID).
#   scripts/package.sh [--bin-dir DIR] [--version VERSION] [--out DIR] [--fast]
#     --bin-dir DIR   package the binaries already in DIR (the tests use the
#                     debug build); default: build them, cargo build --release
#                     (the CNI plugins with --profile release-cni)
#     --version V     the Debian version; default: the workspace's, revision 1
#     --out DIR       where the .deb files go; default: target/deb
#     --fast          quick compression (zstd -1; debug sections uncompressed),
#                     for tests; the files and scripts are the same
# Prints the paths of the two packages. Needs dpkg-dev (dpkg-shlibdeps) and
# binutils (objcopy, strip, readelf), which build-essential brings.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=$repo/packaging/deb

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# cargo's target directory (a relative CARGO_TARGET_DIR is the caller's).
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
bin_dir="" version="" out="$target/deb" fast=0
while (($#)); do
  case "$1" in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --version) version=${2:?--version needs a version}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --fast) fast=1; shift ;;
    -h|--help) usage ;;
    *) echo "package.sh: unknown argument $1" >&2; usage ;;
  esac
done

# Paths given are the caller's; from here on the repository is the directory.
if [ -n "$bin_dir" ]; then
  [ -d "$bin_dir" ] || { echo "package.sh: --bin-dir $bin_dir is not a directory" >&2; exit 2; }
  bin_dir=$(realpath "$bin_dir")
fi
out=$(realpath -m "$out")
cd "$repo"

for tool in dpkg-deb dpkg-shlibdeps objcopy strip readelf gzip; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is not installed (dpkg-dev, binutils)" >&2; exit 1; }
done

# The binaries: name and where the package installs it.
BINARIES=(
  "felix /usr/bin"
  "calicoctl /usr/bin"
  "bgpd /usr/bin"
  "calico-lab /usr/bin"
  "goldmane /usr/bin"
  "calico /opt/cni/bin"
  "calico-ipam /opt/cni/bin"
)
# Everything else: source in packaging/deb, mode, installed path.
FILES=(
  "felix.yaml 0644 /etc/calico/felix.yaml"
  "calicoctl.cfg 0644 /etc/calico/calicoctl.cfg"
  "10-calico.conflist 0644 /etc/cni/net.d/10-calico.conflist"
  "calico-felix.service 0644 /lib/systemd/system/calico-felix.service"
  "README.Debian 0644 /usr/share/doc/calico-rs/README.Debian"
  "copyright 0644 /usr/share/doc/calico-rs/copyright"
)

# binary NAME: the file to package.
if [ -z "$bin_dir" ]; then
  # The CNI plugins in their own profile (Cargo.toml: release-cni, for size).
  export CARGO_TARGET_DIR=$target
  cargo build --release --locked -p felix -p calicoctl -p bgpd -p lab -p flows >&2
  cargo build --profile release-cni --locked -p cni >&2
  binary() {
    case "$1" in
      calico|calico-ipam) echo "$target/release-cni/$1" ;;
      *) echo "$target/release/$1" ;;
    esac
  }
else
  binary() { echo "$bin_dir/$1"; }
fi
for entry in "${BINARIES[@]}"; do
  from=$(binary "${entry%% *}")
  [ -x "$from" ] || { echo "package.sh: no binary $from" >&2; exit 1; }
done

if [ -z "$version" ]; then
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)-1"
fi
# Debian policy 5.6.12: digits first, then alphanumerics and . + ~ (- before the revision).
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$ ]] || {
  echo "package.sh: $version is not a Debian version (e.g. 0.1.0-1)" >&2; exit 2; }
arch=$(dpkg --print-architecture)
# File dates from the last commit, so the same tree gives the same packages.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
pkg=$stage/calico-rs dbg=$stage/calico-rs-dbgsym
mkdir -p "$pkg/DEBIAN" "$dbg/DEBIAN"

# Each binary stripped, its debug information split off into
# /usr/lib/debug/.build-id/NN/REST.debug (the dbgsym package), linked back
# with .gnu_debuglink, as dh_strip does.
build_ids=()
compress=--compress-debug-sections=zlib
((fast)) && compress=--compress-debug-sections=none
for entry in "${BINARIES[@]}"; do
  name=${entry%% *} dir=${entry#* }
  from=$(binary "$name") to=$pkg$dir/$name
  id=$(readelf -n "$from" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
  [ -n "$id" ] || { echo "package.sh: $from has no build ID" >&2; exit 1; }
  debug=$dbg/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
  mkdir -p "$(dirname "$to")" "$(dirname "$debug")"
  objcopy --only-keep-debug "$compress" "$from" "$debug"
  chmod 0644 "$debug"
  strip --remove-section=.comment --remove-section=.note -o "$to" "$from"
  (cd "$(dirname "$debug")" && objcopy --add-gnu-debuglink="$(basename "$debug")" "$to")
  chmod 0755 "$to"
  build_ids+=("$id")
done

for entry in "${FILES[@]}"; do
  read -r file mode path <<<"$entry"
  install -D -m "$mode" "$src/$file" "$pkg$path"
done
# calicoctl's man pages and completions, generated by calicoctl itself.
man=$pkg/usr/share/man/man1
mkdir -p "$man"
"$pkg/usr/bin/calicoctl" man "$man" >/dev/null
gzip -9n "$man"/*.1
for shell in bash:usr/share/bash-completion/completions/calicoctl \
             zsh:usr/share/zsh/vendor-completions/_calicoctl \
             fish:usr/share/fish/vendor_completions.d/calicoctl.fish; do
  mkdir -p "$(dirname "$pkg/${shell#*:}")"
  "$pkg/usr/bin/calicoctl" completion "${shell%%:*}" >"$pkg/${shell#*:}"
done
install -d -m 0755 "$pkg/var/lib/calico"

# The shared libraries' packages, as dpkg-shlibdeps finds them (it wants a
# debian/control to exist).
mkdir -p "$stage/src/debian"
printf 'Source: calico-rs\n\nPackage: calico-rs\nArchitecture: any\n' >"$stage/src/debian/control"
shlibs=$(
  cd "$stage/src"
  files=()
  for entry in "${BINARIES[@]}"; do files+=("$pkg${entry#* }/${entry%% *}"); done
  dpkg-shlibdeps -O "${files[@]}" | sed -n 's/^shlibs:Depends=//p'
)
[ -n "$shlibs" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

# DEBIAN/: control with the version, size and dependencies; conffiles;
# maintainer scripts; md5sums.
control() { # TEMPLATE TREE: the control file for TREE
  local size
  size=$(du -sk --apparent-size --exclude=DEBIAN "$2" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
      -e "s/@SHLIBS_DEPENDS@/$shlibs/" -e "s/@BUILD_IDS@/${build_ids[*]}/" "$1"
}
control "$src/control" "$pkg" >"$pkg/DEBIAN/control"
control "$src/dbgsym-control" "$dbg" >"$dbg/DEBIAN/control"
install -m 0644 "$src/conffiles" "$pkg/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$src/$script" "$pkg/DEBIAN/$script"
done
for tree in "$pkg" "$dbg"; do
  (cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
     xargs -0r md5sum >DEBIAN/md5sums)
  chmod 0644 "$tree/DEBIAN/md5sums"
  find "$tree" -type d -exec chmod 0755 {} +
  find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
done

zflags=(-Zxz)
((fast)) && zflags=(-Zzstd -z1)
debs=()
for tree in "$pkg" "$dbg"; do
  deb=$out/$(basename "$tree")_${version}_$arch.deb
  dpkg-deb --root-owner-group "${zflags[@]}" --build "$tree" "$deb" >/dev/null
  debs+=("$deb")
done
printf '%s\n' "${debs[@]}"
