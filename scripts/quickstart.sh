#!/usr/bin/env bash
# The quickstart: builds felix, the CNI plugins, calicoctl and calico-lab,
# brings up examples/lab/quickstart.clab.yml (three felix hosts and a BIRD 2
# ToR in namespaces), applies its resources, adds two workloads per host
# through the CNI plugin, then prints the reachability matrix and each host's
# BGP status.
#   scripts/quickstart.sh [--name LAB]          run it (lab `quickstart`)
#   scripts/quickstart.sh [--name LAB] --down   delete the workloads, tear the lab down
# Workloads are plugged by the chain loopback, calico (as Calico's conflist).
# QUICKSTART_BIN=DIR skips the package install and the build and takes the
# binaries from DIR (the tests do so).
set -euo pipefail
cd "$(dirname "$0")/.."

lab=quickstart down=""
while (($#)); do
  case "$1" in
    --down) down=1 ;;
    --name) lab="$2"; shift ;;
    *) echo "usage: $0 [--name LAB] [--down]" >&2; exit 2 ;;
  esac
  shift
done

topology=examples/lab/quickstart.clab.yml
resources=examples/lab/quickstart-resources.yaml
state=${CALICO_LAB_STATE_DIR:-/run/calico-lab}/$lab
export DATASTORE_TYPE=sqlite DATASTORE_PATH=$state/datastore.db

if [ -z "$down" ] && { [ -e "$state" ] || ip netns list | grep -q "^clab-$lab-"; }; then
  echo "lab $lab is up already: run $0 --name $lab --down first" >&2
  exit 1
fi

if [ -n "${QUICKSTART_BIN:-}" ]; then
  bin=$QUICKSTART_BIN
elif [ -n "$down" ]; then
  bin=${CARGO_TARGET_DIR:-target}/debug
else
  source scripts/packages.sh
  install_packages
  cargo build --locked -p felix -p cni -p calicoctl -p lab
  bin=${CARGO_TARGET_DIR:-target}/debug
fi
bin=$(cd "$bin" && pwd)
export CNI_PATH=$bin:/usr/lib/cni

# Workloads: host, name, app label. Each host runs two.
WORKLOADS=(h1:client-1:client h1:web-1:web h2:web-2:web h2:db-2:db h3:client-3:client h3:db-3:db)

host_ns() { echo "clab-$lab-$1"; }
work_ns() { echo "qs-$lab-$1"; }

# plugin COMMAND HOST NAME PATH: runs the CNI plugin PATH in HOST's namespace
# for workload NAME, its config on stdin; its log joins the lab's cni.log.
plugin() {
  ip netns exec "$(host_ns "$2")" env \
    CNI_COMMAND="$1" CNI_CONTAINERID="$lab-$3" CNI_NETNS="/var/run/netns/$(work_ns "$3")" \
    CNI_IFNAME=eth0 CNI_PATH="$CNI_PATH" \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$3" \
    "$4" 2>>"$state/cni.log"
}

LOOPBACK='{"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "loopback"}'

# calico_conf HOST APP [PREV]: our plugin's config in the chain after loopback.
calico_conf() {
  local prev=""
  [ -z "${3:-}" ] || prev=", \"prevResult\": $3"
  cat <<JSON
{"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico",
 "datastore_type": "sqlite", "datastore_path": "$DATASTORE_PATH", "nodename": "$1",
 "ipam": {"type": "calico-ipam"},
 "args": {"cni": {"labels": [{"key": "app", "value": "$2"}]}}$prev}
JSON
}

# cni COMMAND HOST NAME APP: the chain loopback, calico (ADD in order, DEL in
# reverse); prints calico's result.
cni() {
  local cmd=$1 host=$2 name=$3 app=$4 lo
  if [ "$cmd" = ADD ]; then
    lo=$(plugin ADD "$host" "$name" /usr/lib/cni/loopback <<<"$LOOPBACK") || return 1
    plugin ADD "$host" "$name" "$bin/calico" <<<"$(calico_conf "$host" "$app" "$lo")"
  else
    plugin DEL "$host" "$name" "$bin/calico" <<<"$(calico_conf "$host" "$app")" || return 1
    plugin DEL "$host" "$name" /usr/lib/cni/loopback <<<"$LOOPBACK"
  fi
}

if [ -n "$down" ]; then
  for w in "${WORKLOADS[@]}"; do
    IFS=: read -r host name app <<<"$w"
    if ip netns list | grep -qw "$(work_ns "$name")"; then
      cni DEL "$host" "$name" "$app" >/dev/null || echo "CNI DEL of $name failed" >&2
      ip netns del "$(work_ns "$name")"
    fi
  done
  "$bin/calico-lab" down --name "$lab"
  exit 0
fi

# A failure from here on leaves the lab up for a look: say how to remove it.
tmp=""
trap 'rc=$?; [ -z "$tmp" ] || rm -rf "$tmp"; ((rc == 0)) || echo "quickstart failed; remove the lab: $0 --name $lab --down" >&2' EXIT
"$bin/calico-lab" up "$topology" --name "$lab" --felix "$bin/felix"
echo "== calicoctl apply -f $resources"
"$bin/calicoctl" apply -f "$resources"

declare -A IP
for w in "${WORKLOADS[@]}"; do
  IFS=: read -r host name app <<<"$w"
  ip netns add "$(work_ns "$name")"
  result=$(cni ADD "$host" "$name" "$app") || { echo "CNI ADD of $name failed: $result" >&2; cat "$state/cni.log" >&2; exit 1; }
  # eth0's address: the result lists loopback's 127.0.0.1 first.
  addr=$(grep -o '"address": *"[0-9.]*/' <<<"$result" | grep -o '[0-9][0-9.]*[0-9]' | grep -v '^127\.' | head -n1)
  [ -n "$addr" ] || { echo "no address for $name in: $result" >&2; exit 1; }
  IP[$name]=$addr
  echo "workload $name (app=$app) on $host: $addr"
done

names=()
for w in "${WORKLOADS[@]}"; do IFS=: read -r _ name _ <<<"$w"; names+=("$name"); done

# Felix has programmed the workloads once every host routes to every one of
# them (its own through their cali interface, the others' over BGP).
echo "== waiting for every host to route to every workload, and for BGP"
deadline=$((SECONDS + 90))
for host in h1 h2 h3; do
  for name in "${names[@]}"; do
    until ip -n "$(host_ns "$host")" route get "${IP[$name]}" >/dev/null 2>&1; do
      ((SECONDS < deadline)) || { echo "$host has no route to $name (${IP[$name]})" >&2; exit 1; }
      sleep 0.5
    done
  done
done

for host in h1 h2 h3; do
  until "$bin/calicoctl" node status --socket "$state/$host/bgp.sock" 2>/dev/null | grep -q Established; do
    ((SECONDS < deadline)) || { echo "$host: no BGP session Established" >&2; exit 1; }
    sleep 0.5
  done
done

# probe SRC DST: ok when SRC's ping reaches DST.
probe() { ip netns exec "$(work_ns "$1")" ping -c1 -W2 -q "${IP[$2]}" >/dev/null 2>&1; }

# Policy may land a moment after the routes: wait until each workload answers
# someone before reading the matrix.
answers() {
  local src
  for src in "${names[@]}"; do
    [ "$src" != "$1" ] && probe "$src" "$1" && return 0
  done
  return 1
}
for dst in "${names[@]}"; do
  until answers "$dst"; do
    ((SECONDS < deadline)) || { echo "nobody reaches $dst" >&2; exit 1; }
    sleep 0.5
  done
done

echo
echo "== reachability (ping), row: from, column: to"
tmp=$(mktemp -d)
for src in "${names[@]}"; do
  for dst in "${names[@]}"; do
    [ "$src" = "$dst" ] && continue
    (probe "$src" "$dst" && echo ok || echo denied) >"$tmp/$src-$dst" &
  done
done
wait
printf '%-10s' ""; printf '%-10s' "${names[@]}"; echo
for src in "${names[@]}"; do
  printf '%-10s' "$src"
  for dst in "${names[@]}"; do
    if [ "$src" = "$dst" ]; then printf '%-10s' "-"; else printf '%-10s' "$(cat "$tmp/$src-$dst")"; fi
  done
  echo
done

for host in h1 h2 h3; do
  echo
  echo "== $host: calicoctl node status"
  "$bin/calicoctl" node status --socket "$state/$host/bgp.sock"
done
echo
echo "tear down: $0 --name $lab --down"
