# The CNI chain (loopback, then our calico plugin) run for a workload in a
# lab host's namespace, as Calico's conflist does; sourced by
# scripts/lab-example.sh and scripts/scale.sh. Needs: lab, state (the lab's
# state directory), CNI_PATH, bin (our binaries), IPAM (the `ipam` section),
# DATASTORE_PATH (the lab's SQLite file), or DATASTORE_TYPE=etcdv3 and
# ETCD_ENDPOINTS (the lab's etcd, as the hosts reach it), and the functions host_ns and
# work_ns (HOST/NAME to a namespace).

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

# calico_conf HOST LABELS [PREV]: our plugin's config in the chain after loopback.
calico_conf() {
  local prev="" labels="" kv
  [ -z "${3:-}" ] || prev=", \"prevResult\": $3"
  IFS=, read -ra kv <<<"$2"
  for kv in "${kv[@]}"; do
    labels+="${labels:+, }{\"key\": \"${kv%%=*}\", \"value\": \"${kv#*=}\"}"
  done
  local store="\"datastore_type\": \"sqlite\", \"datastore_path\": \"${DATASTORE_PATH:-}\""
  [ "${DATASTORE_TYPE:-}" != etcdv3 ] || store="\"datastore_type\": \"etcdv3\", \"etcd_endpoints\": \"$ETCD_ENDPOINTS\""
  cat <<JSON
{"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico",
 $store, "nodename": "$1",
 "ipam": $IPAM,
 "args": {"cni": {"labels": [$labels]}}$prev}
JSON
}

# cni COMMAND HOST NAME LABELS: the chain loopback, calico (ADD in order, DEL
# in reverse); prints calico's result.
cni() {
  local cmd=$1 host=$2 name=$3 labels=$4 lo
  if [ "$cmd" = ADD ]; then
    lo=$(plugin ADD "$host" "$name" /usr/lib/cni/loopback <<<"$LOOPBACK") || return 1
    plugin ADD "$host" "$name" "$bin/calico" <<<"$(calico_conf "$host" "$labels" "$lo")"
  else
    plugin DEL "$host" "$name" "$bin/calico" <<<"$(calico_conf "$host" "$labels")" || return 1
    plugin DEL "$host" "$name" /usr/lib/cni/loopback <<<"$LOOPBACK"
  fi
}
