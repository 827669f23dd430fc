# Sourced by the other scripts: installs the Debian packages the project needs,
# then checks that every command the scripts, examples and tests call is there.
# Idempotent and quiet when everything is present.
#   install_packages lab   what building and the lab examples need (the quickstart)
#   install_packages etcd  that and etcd (scripts/scale.sh --etcd)
#   install_packages all   all that and what the tests need (scripts/test.sh)
#
# Each entry is `package: the commands we call from it` (absolute paths for
# programs outside PATH; `py:MODULE` for a Python module that Debian's
# /usr/bin/python3 must import). Commands from Debian's essential set (bash,
# coreutils, util-linux's mount/nsenter/unshare, findutils, grep, sed) are
# listed too, so a missing one is named rather than failing later.

# Building, and the lab examples (scripts/lab-example.sh, calico-lab).
PACKAGES_LAB=(
  "build-essential: cc make"             # C toolchain for -sys crates (rusqlite bundles SQLite)
  "pkg-config: pkg-config"
  "libnftnl-dev:"                        # nftables dataplane (policy links libnftnl)
  "libmnl-dev:"
  "protobuf-compiler: protoc"            # etcd-client runs protoc at build time,
  "libprotobuf-dev:"                     # which needs the well-known .proto files
  "ca-certificates:"                     # cargo fetches crates over TLS
  "nftables: nft"
  "iproute2: ip bridge ss tc"            # namespaces, veths, routes
  "iputils-ping: ping"
  "procps: sysctl kill"                  # calico-lab sets sysctls in its nodes
  "util-linux: nsenter unshare mount umount setpriv taskset"
  "iperf3: iperf3"                       # the examples' TCP listener; throughput tests
  "conntrack: conntrack"                 # felix flushes a removed workload's flows
  "containernetworking-plugins: /usr/lib/cni/loopback /usr/lib/cni/portmap /usr/lib/cni/ptp /usr/lib/cni/host-local"
  "iptables: iptables"                   # portmap programs its DNAT with iptables
  "bird2: bird birdc"                    # the quickstart's ToR; interop tests
  "coreutils: timeout sleep seq cat chown chroot sha256sum"
  "bash: bash"
)

# etcd: the datastore backend's tests, and scripts/scale.sh --etcd.
PACKAGES_ETCD=(
  "etcd-server: etcd"
  "etcd-client: etcdctl"
)

# The tests, on top of the lab's and etcd.
PACKAGES_TEST=(
  "gobgpd: gobgpd gobgp"                 # real BGP peers for interop tests
  "frr: vtysh /usr/lib/frr/zebra /usr/lib/frr/bgpd"
  "openssl: openssl"                     # etcd TLS certificates
  "python3: python3"                     # UDP probes in the policy tests
  "podman: podman"                       # a real CNI-calling container runtime
  "runc: runc"                           # podman's and containerd's OCI runtime
  "containerd: containerd ctr"           # a second real runtime (ctr run --cni)
  "busybox-static: busybox"              # the test containers' root file system
  "debootstrap: debootstrap"             # clean Debian roots (scripts/debian-root.sh)
  "dpkg-dev: dpkg-deb dpkg-shlibdeps"    # scripts/package.sh builds the .deb
  "binutils: objcopy strip readelf"      # package.sh strips and splits debug info
  "systemd: systemd-analyze"             # the package tests verify the unit
  "python3-grpcio: py:grpc"              # flows/tests/python.rs: a Goldmane client not ours,
  "python3-grpc-tools: py:grpc_tools.protoc" # generated from Goldmane's .proto at test time
  "python3-pkg-resources: py:pkg_resources"  # grpc_tools.protoc imports it; Debian 12's package forgets the dependency
  "chromium: chromium"                   # the console's tests, in a real headless browser
  "chromium-driver: chromedriver"        # driven over WebDriver
)

# _packages GROUP: the entries of GROUP (lab, etcd: the lab's and etcd, or all),
# one per line.
_packages() {
  printf '%s\n' "${PACKAGES_LAB[@]}"
  [ "$1" = lab ] || printf '%s\n' "${PACKAGES_ETCD[@]}"
  [ "$1" != all ] || printf '%s\n' "${PACKAGES_TEST[@]}"
}

# missing_commands GROUP: prints each command of GROUP that cannot be run.
missing_commands() {
  local entry cmd
  while IFS= read -r entry; do
    for cmd in ${entry#*:}; do
      if [[ $cmd == py:* ]]; then
        /usr/bin/python3 -c "import ${cmd#py:}" 2>/dev/null || echo "$cmd (${entry%%:*})"
      elif [[ $cmd == /* ]]; then [ -x "$cmd" ] || echo "$cmd (${entry%%:*})"
      else command -v "$cmd" >/dev/null || echo "$cmd (${entry%%:*})"; fi
    done
  done < <(_packages "$1")
}

install_packages() {
  local group=${1:-all} missing=() entry p
  case "$group" in lab|etcd|all) ;; *) echo "install_packages: group lab, etcd or all, not $group" >&2; return 2 ;; esac
  while IFS= read -r entry; do
    p=${entry%%:*}
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done < <(_packages "$group")
  if ((${#missing[@]})); then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts some daemons on install where an init system runs; the tests
    # start their own instances in their own namespaces, so stop the system ones.
    for svc in bird frr gobgpd etcd containerd; do
      $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
  fi
  local absent
  absent=$(missing_commands "$group")
  if [ -n "$absent" ]; then
    echo "installed, yet these commands are missing (command, package):" >&2
    echo "$absent" | sed 's/^/  /' >&2
    return 1
  fi
}
