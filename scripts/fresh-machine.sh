#!/usr/bin/env bash
# The fresh-machine proof: the README's two commands, exactly as the README's
# "Two commands" block writes them, on a clean Debian 12 that has nothing but
# a minimal Debian and a Rust toolchain.
#
#   1. root       a clean Debian 12 minbase root (scripts/debian-root.sh)
#   2. clone      `git clone` of this repository at REF (default HEAD: what is
#                 committed, not the work tree) into the root's /root/calico-rs
#   3. start      a privileged podman container on that root (--rootfs,
#                 --network host) with the host's Rust toolchain bind-mounted
#                 read-only: RUSTUP_HOME at /root/.rustup and CARGO_HOME/bin at
#                 /root/.cargo/bin, as rustup lays them out; the rest of
#                 /root/.cargo (the crate registry cache) is the root's own
#   4. quickstart the README's first command, in /root/calico-rs
#   5. down       the same command with --down, so the lab does not stay up
#   6. test       the README's second command
#   7. leftovers  no network namespace and no orphaned process is left in the
#                 container
# Each step is timed; a table of step, seconds and pass/FAIL ends the run. The
# first step that fails stops it: the script names the step, prints the end
# of its log, keeps the logs and exits 1.
#
# The root gets nothing from this script beyond debootstrap's minbase: not
# even curl and ca-certificates, which rustup's installer needs (the
# toolchain is mounted instead), so the machine is barer than a real user's.
# Whatever the two commands need they must install themselves, through
# scripts/packages.sh: a missing package there fails this proof. What the
# root does get is the machine's site setup: its local CA certificates
# (/usr/local/share/ca-certificates: a TLS-intercepting egress proxy's, say),
# which count only once the commands install ca-certificates, and, from
# podman, its /etc/resolv.conf and /etc/hosts.
#
# The container is separate from the machine's podman: its own storage
# (--root, --runroot under the work dir, vfs driver), its own containers.conf
# (file locks and tmp dir under the work dir, cgroupfs, runc). The network
# namespaces the lab and the tests make live in the container's /run and go
# with it. On exit (also on failure or Ctrl-C) the container and the podman
# state are removed, and the root unless --keep; the logs stay in the work dir.
#
#   scripts/fresh-machine.sh [--ref REF] [--only quickstart|test] [--workdir DIR] [--keep]
#     --ref REF       the commit to clone (default HEAD)
#     --only STEP     run only the quickstart (with its --down), or only the tests
#     --workdir DIR   where the root, podman's state and the logs go (must not
#                     exist or be empty; default a new ${TMPDIR:-/var/tmp}/fresh-machine.XXXXXX)
#     --keep          keep the root too, for inspection
# Needs root, podman, runc, debootstrap and git (scripts/packages.sh installs
# the first three: install_packages all), a Rust toolchain installed by
# rustup, about 20 GiB free for the work dir, and Debian's mirror and
# crates.io within reach. Takes about 15 minutes on 2 cores (a full build and
# the whole test suite).
set -euo pipefail

usage() {
  echo "usage: $0 [--ref REF] [--only quickstart|test] [--workdir DIR] [--keep]" >&2
  exit 2
}
ref=HEAD only="" work="" keep=""
while (($#)); do
  case "$1" in
    --ref) (($# > 1)) || usage; ref=$2; shift ;;
    --only) (($# > 1)) || usage; only=$2; shift
      case "$only" in quickstart | test) ;; *) usage ;; esac ;;
    --workdir) (($# > 1)) || usage; work=$2; shift ;;
    --keep) keep=1 ;;
    *) usage ;;
  esac
  shift
done

die() { echo "fresh-machine: $*" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, a privileged container)"
for c in podman runc debootstrap git; do
  command -v "$c" >/dev/null || die "$c is not installed"
done
commit=$(git -C "$repo" rev-parse --verify --quiet "$ref^{commit}") || die "no commit $ref in $repo"

# The host's toolchain, as rustup installed it.
command -v rustup >/dev/null || die "no rustup: the proof mounts a rustup toolchain"
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
cargo_real=$(rustup which cargo) || die "rustup has no cargo"
[[ $cargo_real == "$rustup_home"/* ]] || die "cargo ($cargo_real) is not under RUSTUP_HOME ($rustup_home)"
[ -x "$cargo_bin/cargo" ] || die "no cargo proxy in $cargo_bin"

# The README's two commands: the lines of the first ```sh block under
# "## Two commands", comments and blank lines dropped; read from the commit
# under test, so the proof runs what that README says.
mapfile -t commands < <(git -C "$repo" show "$commit:README.md" | awk '
  /^## /   { in_section = ($0 == "## Two commands"); next }
  in_section && /^```/ { if (in_block) exit; in_block = 1; next }
  in_block' | sed -e 's/[[:space:]]#.*$//' -e 's/^#.*$//' -e 's/[[:space:]]*$//' | grep -v '^$' || true)
((${#commands[@]} == 2)) || die "the README's \"Two commands\" block has ${#commands[@]} commands, not 2: ${commands[*]}"
quickstart=${commands[0]} tests=${commands[1]}
[[ $quickstart == *quickstart* ]] || die "the first of the README's two commands is not the quickstart: $quickstart"

# The root ends up with the whole suite's build in it.
probe=${work:-${TMPDIR:-/var/tmp}}
until [ -d "$probe" ]; do probe=$(dirname "$probe"); done
free_gib=$(($(df --output=avail -k "$probe" | tail -1) / 1024 / 1024))
((free_gib >= 20)) || die "needs about 20 GiB free in $probe, has $free_gib GiB"

if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/fresh-machine.XXXXXX")
else
  [ ! -e "$work" ] || [ -z "$(ls -A "$work")" ] || die "$work exists and is not empty"
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
fi
root=$work/root logs=$work/logs pstate=$work/podman
mkdir -p "$logs" "$pstate/tmp"
cat >"$pstate/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
runtime = "runc"
tmp_dir = "$pstate/tmp"
EOF
export CONTAINERS_CONF=$pstate/containers.conf
pod() { podman --root "$pstate/root" --runroot "$pstate/run" --storage-driver vfs "$@"; }
ctr=fresh-machine-$$
# The container's cgroups (and conmon's) under a parent of our own, removed
# on exit.
cgroup_parent=/$ctr
started=""

# podman and runc cannot raise a limit above the hard one (nor nproc above
# pid_max, which podman caps itself to), and runc fails on the defaults: pass
# the machine's own limits.
nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
[ "$nofile" != unlimited ] || nofile=1048576
if [ "$nproc" = unlimited ] || ((nproc > pid_max)); then nproc=$pid_max; fi

# The machine's network namespaces now, to show that the lab's never
# appear among them.
netns_before=$(ip netns list 2>/dev/null | cut -d' ' -f1 | sort)
lab_netns=$work/lab-netns

# The steps run so far: name, seconds, result.
steps=() secs=() results=()
summary() {
  local i
  echo
  printf '%-11s %8s  %s\n' step seconds result
  for i in "${!steps[@]}"; do
    printf '%-11s %8s  %s\n' "${steps[$i]}" "${secs[$i]}" "${results[$i]}"
  done
}

cleanup() {
  local rc=$? left
  trap - EXIT INT TERM
  if [ -n "$started" ]; then
    pod rm -f -t 0 "$ctr" >/dev/null 2>&1 || echo "fresh-machine: could not remove container $ctr" >&2
  fi
  local cg
  for cg in /sys/fs/cgroup"$cgroup_parent" /sys/fs/cgroup/*"$cgroup_parent"; do
    [ ! -d "$cg" ] || find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null ||
      echo "fresh-machine: could not remove cgroup $cg" >&2
  done
  # The lab's namespaces were in the container's own /run: none of them may
  # be on the machine now unless it was there before.
  if [ -s "$lab_netns" ]; then
    left=$(comm -12 <(sort "$lab_netns") <(ip netns list 2>/dev/null | cut -d' ' -f1 | sort | comm -13 <(echo "$netns_before") -))
    if [ -n "$left" ]; then
      echo "fresh-machine: the lab's network namespaces are on this machine: $(tr '\n' ' ' <<<"$left")" >&2
      rc=1
    fi
  fi
  # Nothing of ours may stay mounted (podman unmounts the container's shm on
  # rm): removing a tree with a mount inside would reach into it.
  left=$(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo)
  if [ -n "$left" ]; then
    echo "fresh-machine: still mounted, left in place with $work:" >&2
    echo "$left" | sed 's/^/  /' >&2
    rc=1
  elif [ -n "$keep" ]; then
    echo "kept: $work (root: $root, logs: $logs)"
  else
    rm -rf --one-file-system "$root" "$pstate"
    rm -f "$lab_netns"
    echo "logs kept in $logs"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# step NAME COMMAND...: runs COMMAND with its output in NAME's log, timed;
# on failure prints the log's end and the summary, and exits.
step() {
  local name=$1 log t0 rc=0
  shift
  log=$logs/$((${#steps[@]} + 1))-$name.log
  echo "== $name ($(date +%T)), log: $log"
  t0=$SECONDS
  # In the background and waited for, so that a signal reaches the trap at
  # once rather than after the step.
  "$@" >"$log" 2>&1 </dev/null &
  wait "$!" || rc=$?
  steps+=("$name") secs+=($((SECONDS - t0)))
  if ((rc == 0)); then
    results+=(pass)
    return 0
  fi
  results+=("FAIL (exit $rc)")
  echo
  echo "step $name FAILED (exit $rc); the end of $log:"
  tail -n 40 "$log" | sed 's/^/  | /'
  summary
  echo
  echo "fresh-machine: FAIL at step $name"
  exit 1
}

# in_root COMMAND: runs the shell command COMMAND in the container, in the clone.
in_root() { pod exec -w /root/calico-rs "$ctr" bash -c "$1"; }

clone() {
  git clone --quiet --no-checkout "$repo" "$root/root/calico-rs" &&
    git -C "$root/root/calico-rs" checkout --quiet --detach "$commit" &&
    git -C "$root/root/calico-rs" log -1 --oneline
}

start() {
  # The machine's local CAs, where the root's ca-certificates will look.
  if [ -d /usr/local/share/ca-certificates ]; then
    cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" || return 1
  fi
  # PID 1 is a shell that waits, so it reaps the daemons the lab and the
  # tests leave to it (podman here has no --init binary). No pids limit:
  # podman's default of 2048 tasks is not a fresh machine's, and the test
  # suite's threads exceed it.
  pod run -d --name "$ctr" --privileged --network host \
    --cgroup-parent "$cgroup_parent" --pids-limit -1 \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
    -v "$rustup_home:/root/.rustup:ro" -v "$cargo_bin:/root/.cargo/bin:ro" \
    -e PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --rootfs "$root" bash -c 'trap "exit 0" TERM; while :; do sleep 3600 & wait; done' &&
    in_root 'cargo --version && rustc --version && cargo fmt --version && . /etc/os-release && echo "$PRETTY_NAME"'
}

# The quickstart's --down, after noting the lab's namespaces.
down() {
  in_root 'ls /run/netns' >"$lab_netns" && echo "the lab's namespaces: $(tr '\n' ' ' <"$lab_netns")" &&
    in_root "$quickstart --down"
}

# No network namespace left in the container's /run/netns, and no process
# left to PID 1 but its own sleep.
leftovers() {
  in_root '
    bad=0
    if [ -n "$(ls -A /run/netns 2>/dev/null)" ]; then
      echo "network namespaces left:"; ls /run/netns; bad=1
    fi
    for p in /proc/[0-9]*; do
      [ "$(awk "/^PPid:/ { print \$2 }" "$p/status" 2>/dev/null)" = 1 ] || continue
      cmd=$(tr "\0" " " <"$p/cmdline" 2>/dev/null) || continue
      [ "$cmd" = "sleep 3600 " ] && continue
      echo "process left: ${p#/proc/} $cmd"; bad=1
    done
    exit "$bad"'
}

echo "fresh-machine: $(git -C "$repo" log -1 --format='%h %s' "$commit" | cut -c1-72)"
echo "work dir $work; the README's commands: '$quickstart', '$tests'"
step root "$repo/scripts/debian-root.sh" "$root"
step clone clone
started=1
step start start
if [ "$only" != test ]; then
  step quickstart in_root "$quickstart"
  step down down
fi
if [ "$only" != quickstart ]; then
  step test in_root "$tests"
fi
step leftovers leftovers
summary
echo
echo "fresh-machine: pass ($SECONDS s)"
