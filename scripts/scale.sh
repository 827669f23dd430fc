#!/usr/bin/env bash
# The scale harness: N hosts running release felix on one switch, on the
# lab's SQLite datastore or (--etcd) on one etcd member on the switch, in a
# full mesh or behind K in-cluster route reflectors, one workload per host
# through the CNI plugin; it measures
#   - how long `calico-lab up` takes (the felix processes start one by one),
#   - from the last felix started to every BGP session Established, then
#     (the workloads added) to every host routing to every other host's
#     block, also counted from the last workload added,
#   - felix's RSS (mean, max) and CPU seconds per host, the datastore's size
#     (and etcd's CPU seconds and RSS),
#   - after felix on one host restarts: until its sessions are all
#     Established again, and every host's session to it,
# and prints one markdown row. With --workloads M, host h1 then gets M more
# workloads one by one, and the harness prints their curve per hundred: the
# CNI ADD's time (the chain, loopback and calico), the time from ADD's
# return until felix has the workload's interface in the nftables ingress
# map (until then the workload's traffic is dropped), and felix's RSS.
# The lab is removed at the end (also on error).
#   scripts/scale.sh N [--rr K] [--etcd] [--workloads M] [--name LAB] [--keep]
# Root. Builds felix, calicoctl, the CNI plugins and calico-lab in release.
# calico-lab sizes the kernel's neighbour table for the lab; a lab past a
# few hundred hosts also needs `ulimit -n` and the kernel's inotify and
# thread limits to hold (see the README's scale section).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 N [--rr K] [--etcd] [--workloads M] [--name LAB] [--keep]" >&2; exit 2; }
(($#)) || usage
hosts=$1
shift
[[ "$hosts" =~ ^[0-9]+$ ]] && ((hosts >= 2 && hosts <= 1000)) || usage
rr=0 lab=scale keep="" curve=0 etcd=""
while (($#)); do
  case "$1" in
    --rr) (($# > 1)) || usage; rr=$2; shift ;;
    --workloads) (($# > 1)) || usage; curve=$2; shift ;;
    --etcd) etcd=1 ;;
    --name) (($# > 1)) || usage; lab=$2; shift ;;
    --keep) keep=1 ;;
    *) usage ;;
  esac
  shift
done
((rr >= 0 && rr < hosts)) || usage
[[ "$curve" =~ ^[0-9]+$ ]] && ((curve <= 5000)) || usage

source scripts/packages.sh
install_packages "$([ -n "$etcd" ] && echo etcd || echo lab)"

cargo build --release --locked -p felix -p cni -p calicoctl -p lab
bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
export CNI_PATH=$bin:/usr/lib/cni
state=${CALICO_LAB_STATE_DIR:-/run/calico-lab}/$lab
IPAM='{"type": "calico-ipam"}'
host_ns() { echo "clab-$lab-$1"; }
dir=$(mktemp -d)
# The datastore as felix and the CNI plugin (in the hosts' namespaces) and
# calicoctl (here, or in etcd's namespace) are told it.
if [ -n "$etcd" ]; then
  # One etcd member on the switch at 10.100.255.254 (no host is given that
  # address), its data on disk as the SQLite file's is.
  etcd_addr=10.100.255.254
  export DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=http://$etcd_addr:2379
  datastore_env=(DATASTORE_TYPE=etcdv3 "ETCD_ENDPOINTS=$ETCD_ENDPOINTS")
  calicoctl() { ip netns exec "$(host_ns etcd)" env "${datastore_env[@]}" "$bin/calicoctl" "$@"; }
else
  export DATASTORE_TYPE=sqlite DATASTORE_PATH=$state/datastore.db
  datastore_env=(DATASTORE_TYPE=sqlite "DATASTORE_PATH=$DATASTORE_PATH")
  calicoctl() { "$bin/calicoctl" "$@"; }
fi
work_ns() { echo "wl-$lab-$1"; }
# shellcheck source=scripts/cni-lib.sh
source scripts/cni-lib.sh

# Host i (1-based): h$i at 10.100.X.Y/16.
addr() { echo "10.100.$(($1 / 250)).$(($1 % 250 + 1))"; }

cleanup() {
  rc=$?
  if [ -z "$keep" ]; then
    # etcd is not a daemon calico-lab knows of: it goes first, before its
    # namespace and its data directory.
    if [ -s "$dir/etcd.pid" ]; then
      kill "$(cat "$dir/etcd.pid")" 2>/dev/null || true
      # Until it has exited, for 10 s at most; then it is killed.
      for ((t = 0; t < 100; t++)); do kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$(cat "$dir/etcd.pid")" 2>/dev/null || true
    fi
    for ((i = 1; i <= hosts; i++)); do
      ip netns del "$(work_ns "h$i")" 2>/dev/null || true
    done
    for ((w = 1; w <= curve; w++)); do
      ip netns del "$(work_ns "h1-w$w")" 2>/dev/null || true
    done
    "$bin/calico-lab" down --name "$lab" >/dev/null 2>&1 || true
  fi
  [ -n "$keep" ] || rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT

{
  echo "name: $lab"
  echo "topology:"
  echo "  kinds:"
  echo "    linux:"
  echo "      image: ghcr.io/calico-rs/felix:dev"
  echo -n "      env: {CALICO_NETWORKING_BACKEND: bird, AS: \"64512\""
  [ -z "$etcd" ] || echo -n ", DATASTORE_TYPE: etcdv3, ETCD_ENDPOINTS: \"$ETCD_ENDPOINTS\""
  echo "}"
  echo "  nodes:"
  echo "    sw: {kind: bridge}"
  # Started before any felix (a node's exec runs before the daemons), and
  # healthy before the exec returns.
  [ -z "$etcd" ] || echo "    etcd: {kind: linux, labels: {calico-rs.role: linux}, exec: [ip addr add $etcd_addr/16 dev eth1, sh $dir/etcd.sh]}"
  for ((i = 1; i <= hosts; i++)); do
    echo "    h$i: {kind: linux, env: {IP: $(addr "$i")/16}, exec: [ip addr add $(addr "$i")/16 dev eth1]}"
  done
  echo "  links:"
  for ((i = 1; i <= hosts; i++)); do
    echo "    - endpoints: [\"h$i:eth1\", \"sw:p$i\"]"
  done
  [ -z "$etcd" ] || echo "    - endpoints: [\"etcd:eth1\", \"sw:p0\"]"
} >"$dir/scale.clab.yml"
if [ -n "$etcd" ]; then
  cat >"$dir/etcd.sh" <<SH
setsid etcd --name scale --data-dir "$dir/etcd" \\
  --listen-client-urls "http://$etcd_addr:2379,http://127.0.0.1:2379" \\
  --advertise-client-urls "$ETCD_ENDPOINTS" \\
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \\
  --initial-cluster scale=http://127.0.0.1:2380 >"$dir/etcd.log" 2>&1 </dev/null &
echo \$! >"$dir/etcd.pid"
for i in \$(seq 300); do
  etcdctl --endpoints http://127.0.0.1:2379 endpoint health >/dev/null 2>&1 && exit 0
  kill -0 "\$(cat "$dir/etcd.pid")" 2>/dev/null || break
  sleep 0.1
done
echo "etcd is not healthy:" >&2; tail "$dir/etcd.log" >&2; exit 1
SH
fi
mesh=true
((rr == 0)) || mesh=false
cat >"$dir/resources.yaml" <<YAML
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: scale}
spec: {cidr: 10.244.0.0/14, blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: $mesh, asNumber: 64512}
---
# Calico's default maxBlocksPerHost (20 blocks of 64) stops a host at 1,280
# addresses; the curve's host needs one block per 64 workloads.
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata: {name: default}
spec: {maxBlocksPerHost: $(( (curve + 1) / 64 + 21 ))}
YAML
if ((rr > 0)); then
  cat >>"$dir/resources.yaml" <<YAML
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}
YAML
fi

echo "== $hosts hosts, $( ((rr)) && echo "$rr route reflectors" || echo "full mesh")"
start=$SECONDS
# Hundreds of felix processes on a few cores start slowly: each one that
# joins makes every other recalculate and add a BGP peer.
"$bin/calico-lab" up "$dir/scale.clab.yml" --name "$lab" --felix "$bin/felix" --ready-timeout 600 >/dev/null
up=$((SECONDS - start))
echo "lab up: $up s"
t0=$(date +%s.%N)
calicoctl apply -f "$dir/resources.yaml" >/dev/null
for ((i = 1; i <= rr; i++)); do
  calicoctl patch node "h$i" -p '{"spec": {"bgp": {"routeReflectorClusterID": "244.0.0.1"}}}' >/dev/null
  calicoctl label node "h$i" route-reflector=true >/dev/null
done

# The sessions a host should have: every other host in a mesh; behind route
# reflectors, a client has one per reflector, a reflector one per host.
expected() {
  if ((rr == 0 || $1 <= rr)); then echo $((hosts - 1)); else echo "$rr"; fi
}
# settled HOST_INDEX: all its expected sessions Established.
settled() {
  local status up
  status=$(calicoctl node status --socket "$state/h$1/bgp.sock" 2>/dev/null) || return 1
  up=$(grep -E '^\| [0-9.]+ ' <<<"$status" | grep -c Established || true)
  ((up == $(expected "$1")))
}
# routed HOST_INDEX: a route for every other host's block (BGP, protocol 200).
routed() {
  (($(ip -n "$(host_ns "h$1")" route show proto 200 | grep -c '^10\.24[4-7]\.') >= hosts - 1))
}
# wait_all CHECK: until CHECK holds for every host; hosts found done are not
# asked again. Gives up after 20 minutes.
wait_all() {
  local check=$1 i pending=() next deadline=$((SECONDS + 1200))
  for ((i = 1; i <= hosts; i++)); do pending+=("$i"); done
  while ((${#pending[@]})); do
    next=()
    for i in "${pending[@]}"; do "$check" "$i" || next+=("$i"); done
    pending=("${next[@]}")
    ((${#pending[@]} == 0)) && break
    ((SECONDS < deadline)) || { echo "$check: ${#pending[@]} hosts not done, e.g. h${pending[0]}" >&2; exit 1; }
    sleep 0.5
  done
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

wait_all settled
t_sessions=$(elapsed "$t0")
echo "all sessions Established: $t_sessions s after the last felix started"
for ((i = 1; i <= hosts; i++)); do
  ip netns add "$(work_ns "h$i")"
  cni ADD "h$i" "h$i" "app=scale" >/dev/null || { echo "CNI ADD on h$i failed" >&2; tail "$state/cni.log" >&2; exit 1; }
done
t_wl=$(date +%s.%N)
wait_all routed
t_routes=$(elapsed "$t0")
t_routes_wl=$(elapsed "$t_wl")
echo "every host routes to every block: $t_routes s ($t_routes_wl s after the last workload)"

# felix pid of host h$1, from calico-lab's state file.
felix_pid() {
  tr -d ' \n' <"$state/state.json" | grep -o "\"name\":\"h$1\"[^]]*\"pid\":[0-9]*" | grep -o '[0-9]*$'
}
now_ms() { awk -v t="$(date +%s.%N)" 'BEGIN { printf "%.1f", t * 1000 }'; }
# p50 and p99 (nearest rank) of the numbers in file $1.
percentiles() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)]
    printf "%.0f / %.0f", p50, p99 }'
}

if ((curve > 0)); then
  echo
  echo "| workloads on h1 | CNI ADD p50 / p99 | ADD return to programmed p50 / p99 | felix RSS |"
  echo "|---:|---:|---:|---:|"
  : >"$dir/add" && : >"$dir/programmed"
  for ((w = 1; w <= curve; w++)); do
    name="h1-w$w"
    ip netns add "$(work_ns "$name")"
    t=$(now_ms)
    result=$(cni ADD h1 "$name" "app=curve") || { echo "CNI ADD of $name failed" >&2; tail "$state/cni.log" >&2; exit 1; }
    t_added=$(now_ms)
    awk -v a="$t" -v b="$t_added" 'BEGIN { print b - a }' >>"$dir/add"
    iface=$(grep -o '"name": *"cali[^"]*"' <<<"$result" | head -1 | grep -o 'cali[^"]*')
    [ -n "$iface" ] || { echo "no cali interface in the result for $name: $result" >&2; exit 1; }
    until ip netns exec "$(host_ns h1)" nft get element inet calico wl-to "{ $iface }" >/dev/null 2>&1; do
      awk -v a="$t_added" -v b="$(now_ms)" 'BEGIN { exit !(b - a > 120000) }' && { echo "$name ($iface) not programmed after 120 s" >&2; exit 1; }
      sleep 0.005
    done
    awk -v a="$t_added" -v b="$(now_ms)" 'BEGIN { print b - a }' >>"$dir/programmed"
    if ((w % 100 == 0 || w == curve)); then
      rss=$(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$(felix_pid 1)/status")
      echo "| $w | $(percentiles "$dir/add") ms | $(percentiles "$dir/programmed") ms | $rss MiB |"
      : >"$dir/add" && : >"$dir/programmed"
    fi
  done
  echo
fi
tck=$(getconf CLK_TCK)
rss_sum=0 rss_max=0 cpu_sum=0
for ((i = 1; i <= hosts; i++)); do
  pid=$(felix_pid "$i")
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  cpu=$(awk -v t="$tck" '{ print ($14 + $15) / t }' "/proc/$pid/stat")
  rss_sum=$((rss_sum + rss))
  ((rss > rss_max)) && rss_max=$rss
  cpu_sum=$(awk -v a="$cpu_sum" -v b="$cpu" 'BEGIN { print a + b }')
done
rss_mean=$((rss_sum / hosts / 1024))
cpu_mean=$(awk -v a="$cpu_sum" -v n="$hosts" 'BEGIN { printf "%.1f", a / n }')
if [ -n "$etcd" ]; then
  pid=$(cat "$dir/etcd.pid")
  # Its database, not the write-ahead log (preallocated in 64 MiB files).
  db="etcd: $(du -m "$dir/etcd/member/snap/db" | cut -f1) MiB, $(awk -v t="$tck" '{ printf "%.0f", ($14 + $15) / t }' "/proc/$pid/stat") s CPU, $(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$pid/status") MiB RSS"
else
  db="SQLite: $(du -m "$DATASTORE_PATH" | cut -f1) MiB"
fi

# Felix on the last host restarts (SIGTERM, then started as calico-lab
# starts it): until its sessions, and every other host's to it, are back.
victim=$hosts
pid=$(felix_pid "$victim")
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
t_restart=$(date +%s.%N)
ip netns exec "$(host_ns "h$victim")" env CALICO_NETWORKING_BACKEND=bird AS=64512 \
  IP="$(addr "$victim")/16" "${datastore_env[@]}" \
  "$bin/felix" run --node-name "h$victim" --bgp-socket "$state/h$victim/bgp.sock" \
  >>"$state/h$victim/felix.restart.log" 2>&1 &
disown  # calico-lab down kills it with the lab
until settled "$victim"; do
  awk -v e="$(elapsed "$t_restart")" 'BEGIN { exit !(e > 600) }' && { echo "h$victim did not come back" >&2; exit 1; }
  sleep 0.2
done
t_back=$(elapsed "$t_restart")
wait_all settled
t_back_all=$(elapsed "$t_restart")

sessions=0
for ((i = 1; i <= hosts; i++)); do sessions=$((sessions + $(expected "$i"))); done
mode="full mesh"
((rr == 0)) || mode="$rr route reflectors"
echo
echo "| hosts | BGP | sessions (both ends) | lab up | all sessions Established | all routes | all routes, after the last workload | felix RSS mean / max | felix CPU per host | datastore | restarted host back / all its peers |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| $hosts | $mode | $sessions | ${up} s | ${t_sessions} s | ${t_routes} s | ${t_routes_wl} s | ${rss_mean} / $((rss_max / 1024)) MiB | ${cpu_mean} s | ${db} | ${t_back} / ${t_back_all} s |"
