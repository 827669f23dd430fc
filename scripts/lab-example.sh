#!/usr/bin/env bash
# Runs one of the lab examples of examples/lab/ (quickstart, route-reflectors,
# dual-stack): builds felix, the CNI plugins, calicoctl and calico-lab, brings
# up EXAMPLE/EXAMPLE.clab.yml with calico-lab, applies EXAMPLE/resources.yaml,
# runs the example's setup, adds its workloads through the CNI plugin, waits
# until every host routes to every workload and every BGP session is
# Established, then prints reachability matrices (ping, and TCP to a port
# every workload listens on) per IP family, each host's BGP status and, with
# a flow aggregator in the lab, the command listing the cluster's flows.
#   scripts/lab-example.sh EXAMPLE [--name LAB]          run it (lab EXAMPLE)
#   scripts/lab-example.sh EXAMPLE [--name LAB] --down   delete the workloads, tear the lab down
# EXAMPLE/example.sh (sourced) says what the files cannot:
#   WORKLOADS  HOST:NAME:LABELS entries, LABELS as k=v[,k=v]
#   FAMILIES   the IP families to address and probe (default: 4)
#   TCP_PORT   a port every workload listens on (iperf3 -s), probed with a
#              TCP connect for a second matrix (default: none)
#   IPAM       the CNI `ipam` section (default: calico-ipam, IPv4 only)
#   setup      a function run after resources.yaml is applied (default: none)
# Workloads are plugged by the chain loopback, calico (as Calico's conflist).
# QUICKSTART_BIN=DIR skips the package install and the build and takes the
# binaries from DIR (the tests do so).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 EXAMPLE [--name LAB] [--down]" >&2; exit 2; }
(($#)) || usage
example=$1
shift
dir=examples/lab/$example
[ -f "$dir/example.sh" ] || { echo "no example $example in examples/lab/" >&2; usage; }
lab=$example down=""
while (($#)); do
  case "$1" in
    --down) down=1 ;;
    --name) (($# > 1)) || usage; lab="$2"; shift ;;
    *) usage ;;
  esac
  shift
done

WORKLOADS=() FAMILIES=(4) IPAM='{"type": "calico-ipam"}' TCP_PORT=""
setup() { :; }
# shellcheck source=/dev/null
source "$dir/example.sh"

topology=$dir/$example.clab.yml
resources=$dir/resources.yaml
state=${CALICO_LAB_STATE_DIR:-/run/calico-lab}/$lab
export DATASTORE_TYPE=sqlite DATASTORE_PATH=$state/datastore.db

# The packages first: the check below needs `ip` (iproute2), which a fresh
# machine may lack.
if [ -z "${QUICKSTART_BIN:-}" ] && [ -z "$down" ]; then
  source scripts/packages.sh
  install_packages lab
fi

# grep reads the whole list (no -q): quitting early would kill `ip` with
# SIGPIPE once the list is long, and pipefail would turn a match into "no".
if [ -z "$down" ] && { [ -e "$state" ] || ip netns list | grep "^clab-$lab-" >/dev/null; }; then
  echo "lab $lab is up already: run $0 $example --name $lab --down first" >&2
  exit 1
fi

if [ -n "${QUICKSTART_BIN:-}" ]; then
  bin=$QUICKSTART_BIN
elif [ -n "$down" ]; then
  bin=${CARGO_TARGET_DIR:-target}/debug
else
  cargo build --locked -p felix -p flows -p cni -p calicoctl -p lab
  bin=${CARGO_TARGET_DIR:-target}/debug
fi
bin=$(cd "$bin" && pwd)
export CNI_PATH=$bin:/usr/lib/cni
calicoctl() { "$bin/calicoctl" "$@"; }

host_ns() { echo "clab-$lab-$1"; }
work_ns() { echo "wl-$lab-$1"; }

# The workloads' hosts, in order of first appearance.
hosts=() names=()
for w in "${WORKLOADS[@]}"; do
  IFS=: read -r host name _ <<<"$w"
  [[ " ${hosts[*]} " == *" $host "* ]] || hosts+=("$host")
  names+=("$name")
done

# plugin, calico_conf and cni: the CNI chain run in a host's namespace.
# shellcheck source=scripts/cni-lib.sh
source scripts/cni-lib.sh

if [ -n "$down" ]; then
  for w in "${WORKLOADS[@]}"; do
    IFS=: read -r host name labels <<<"$w"
    if [ -e "/run/netns/$(work_ns "$name")" ]; then
      cni DEL "$host" "$name" "$labels" >/dev/null || echo "CNI DEL of $name failed" >&2
      ip netns pids "$(work_ns "$name")" | xargs -r kill  # its TCP listener
      ip netns del "$(work_ns "$name")"
    fi
  done
  "$bin/calico-lab" down --name "$lab"
  exit 0
fi

# A failure from here on leaves the lab up for a look: say how to remove it.
tmp=""
trap 'rc=$?; [ -z "$tmp" ] || rm -rf "$tmp"; ((rc == 0)) || echo "$example failed; remove the lab: $0 $example --name $lab --down" >&2' EXIT
"$bin/calico-lab" up "$topology" --name "$lab" --felix "$bin/felix"
echo "== calicoctl apply -f $resources"
calicoctl apply -f "$resources"
setup

# The address of each workload by family: IP4[name], IP6[name].
declare -A IP4 IP6
addr_of() { if [ "$1" = 6 ]; then echo "${IP6[$2]:-}"; else echo "${IP4[$2]:-}"; fi; }
for w in "${WORKLOADS[@]}"; do
  IFS=: read -r host name labels <<<"$w"
  ip netns add "$(work_ns "$name")"
  result=$(cni ADD "$host" "$name" "$labels") || { echo "CNI ADD of $name failed: $result" >&2; cat "$state/cni.log" >&2; exit 1; }
  # eth0's addresses: the result lists loopback's first.
  for addr in $(grep -o '"address": *"[^"]*"' <<<"$result" | cut -d'"' -f4); do
    addr=${addr%/*}
    case "$addr" in
      127.* | ::1) ;;
      *:*) IP6[$name]=$addr ;;
      *) IP4[$name]=$addr ;;
    esac
  done
  for family in "${FAMILIES[@]}"; do
    [ -n "$(addr_of "$family" "$name")" ] || { echo "no IPv$family address for $name in: $result" >&2; exit 1; }
  done
  if [ -n "$TCP_PORT" ]; then
    ip netns exec "$(work_ns "$name")" iperf3 -s -D -p "$TCP_PORT" --logfile /dev/null
  fi
  echo "workload $name ($labels) on $host: ${IP4[$name]:-}${IP6[$name]:+ ${IP6[$name]}}"
done

# Felix has programmed the workloads once every host routes to every one of
# them (its own through their cali interface, the others' over BGP or VXLAN).
echo "== waiting for every host to route to every workload, and for BGP"
deadline=$((SECONDS + 120))
for host in "${hosts[@]}"; do
  for name in "${names[@]}"; do
    for family in "${FAMILIES[@]}"; do
      until ip -n "$(host_ns "$host")" -"$family" route get "$(addr_of "$family" "$name")" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "$host has no IPv$family route to $name ($(addr_of "$family" "$name"))" >&2; exit 1; }
        sleep 0.5
      done
    done
  done
done

# bgp_settled HOST: HOST has BGP peers and every one is Established.
bgp_settled() {
  local status peers up
  status=$(calicoctl node status --socket "$state/$1/bgp.sock" 2>/dev/null) || return 1
  peers=$(grep -cE '^\| [0-9a-f.:]+ ' <<<"$status" || true)
  up=$(grep -E '^\| [0-9a-f.:]+ ' <<<"$status" | grep -c Established || true)
  ((peers > 0 && peers == up))
}
for host in "${hosts[@]}"; do
  [ -S "$state/$host/bgp.sock" ] || continue
  until bgp_settled "$host"; do
    ((SECONDS < deadline)) || { echo "$host: not every BGP session is Established" >&2; calicoctl node status --socket "$state/$host/bgp.sock" >&2 || true; exit 1; }
    sleep 0.5
  done
done

# probe FAMILY PROBE SRC DST: ok when SRC reaches DST by PROBE: ping, or a
# TCP connect to TCP_PORT.
probe() {
  local addr
  addr=$(addr_of "$1" "$4")
  if [ "$2" = ping ]; then
    ip netns exec "$(work_ns "$3")" ping -"$1" -c1 -W2 -q "$addr" >/dev/null 2>&1
  else
    ip netns exec "$(work_ns "$3")" timeout 2 bash -c "exec 3<>/dev/tcp/$addr/$TCP_PORT" 2>/dev/null
  fi
}

# matrix FAMILY PROBE: one round of every probe, in parallel, as "SRC DST
# ok|denied" lines.
tmp=$(mktemp -d)
matrix() {
  local src dst
  for src in "${names[@]}"; do
    for dst in "${names[@]}"; do
      [ "$src" = "$dst" ] && continue
      (probe "$1" "$2" "$src" "$dst" && echo ok || echo denied) >"$tmp/$src-$dst" &
    done
  done
  wait
  for src in "${names[@]}"; do
    for dst in "${names[@]}"; do
      [ "$src" = "$dst" ] || echo "$src $dst $(cat "$tmp/$src-$dst")"
    done
  done
}

probes=(ping)
[ -z "$TCP_PORT" ] || probes+=(tcp)
# Policy is programmed in the same pass as the host's own routes, and a
# remote host's routes arrive over BGP after its policy: the matrices should
# be settled now. Read each until two rounds agree, in case a pass was still
# going.
for family in "${FAMILIES[@]}"; do
  for p in "${probes[@]}"; do
    title="IPv$family ping"
    [ "$p" = ping ] || title="IPv$family TCP $TCP_PORT"
    previous=$(matrix "$family" "$p")
    until current=$(matrix "$family" "$p") && [ "$current" = "$previous" ]; do
      ((SECONDS < deadline)) || { echo "the $title matrix does not settle" >&2; exit 1; }
      previous=$current
    done
    echo
    echo "== reachability ($title), row: from, column: to"
    printf '%-10s' ""; printf '%-10s' "${names[@]}"; echo
    for src in "${names[@]}"; do
      printf '%-10s' "$src"
      for dst in "${names[@]}"; do
        if [ "$src" = "$dst" ]; then
          printf '%-10s' "-"
        else
          printf '%-10s' "$(grep "^$src $dst " <<<"$current" | cut -d' ' -f3)"
        fi
      done
      echo
    done
  done
done

for host in "${hosts[@]}"; do
  [ -S "$state/$host/bgp.sock" ] || continue
  echo
  echo "== $host: calicoctl node status"
  calicoctl node status --socket "$state/$host/bgp.sock"
done

# Every felix writes its sessions into the datastore (CalicoNodeStatus) a
# period after they change: one table of the whole lab from anywhere.
all_reported() {
  local out host
  out=$(calicoctl node status --all 2>/dev/null) || return 1
  ! grep -q '| start |' <<<"$out" || return 1
  for host in "${hosts[@]}"; do
    [ ! -S "$state/$host/bgp.sock" ] || grep -q "^| $host " <<<"$out" || return 1
  done
}
if [ -n "$(ls "$state"/*/bgp.sock 2>/dev/null)" ]; then
  until all_reported; do
    ((SECONDS < deadline + 30)) || break
    sleep 0.5
  done
  echo
  echo "== calicoctl node status --all"
  calicoctl node status --all || true
fi
# A flow aggregator in the lab (a goldmane node): where to read its flows.
for socket in "$state"/*/goldmane.sock; do
  [ -S "$socket" ] || continue
  echo
  echo "== the cluster's flows (aggregated every 15 s; --follow to watch, --action deny for denials):"
  echo "  DATASTORE_TYPE=sqlite DATASTORE_PATH=$DATASTORE_PATH $bin/calicoctl flows --server unix:$socket"
  echo
  echo "== the web console (flows, policies, every node's BGP sessions, IPAM), then open http://127.0.0.1:8081/"
  echo "  DATASTORE_TYPE=sqlite DATASTORE_PATH=$DATASTORE_PATH $bin/calicoctl console --flows-server unix:$socket"
done
echo
echo "tear down: $0 $example --name $lab --down"
