# Sourced by the other scripts: installs the Debian packages the project needs.
# Idempotent and quiet when everything is present.

# Packages the builds and tests need (see README.md, "What the tests need").
PACKAGES=(
  build-essential pkg-config          # C toolchain for -sys crates (rusqlite bundles SQLite)
  libnftnl-dev libmnl-dev nftables    # nftables dataplane (policy)
  protobuf-compiler                   # etcd-client runs protoc at build time
  iproute2 iputils-ping iperf3        # namespaces, veths, traffic
  conntrack                           # felix flushes a removed workload's flows
  containernetworking-plugins iptables # reference CNI plugins (loopback, portmap: iptables) chained with ours
  bird2 gobgpd frr exabgp             # real BGP peers for interop tests
  etcd-server etcd-client openssl     # the etcd datastore backend tests (TLS certificates by openssl)
)

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts some daemons on install where an init system runs; the tests
  # start their own instances in their own namespaces, so stop the system ones.
  for svc in bird frr gobgpd etcd; do
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
}
