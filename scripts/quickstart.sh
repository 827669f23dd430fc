#!/usr/bin/env bash
# The quickstart: builds calicoctl, creates an embedded datastore, applies the
# resources in examples/ and lists what is there.
#   scripts/quickstart.sh          run it (store in /var/lib/calico/quickstart.db)
#   scripts/quickstart.sh --down   remove the quickstart's store
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh

export DATASTORE_TYPE=sqlite
export DATASTORE_PATH="${DATASTORE_PATH:-/var/lib/calico/quickstart.db}"

if [ "${1:-}" = "--down" ]; then
  rm -f "$DATASTORE_PATH" "$DATASTORE_PATH-wal" "$DATASTORE_PATH-shm"
  echo "removed $DATASTORE_PATH"
  exit 0
fi

install_packages
cargo build --locked -p calicoctl
ctl=target/debug/calicoctl

echo "== calicoctl apply -f examples/ (store: $DATASTORE_PATH)"
"$ctl" apply -f examples/
for kind in ippools bgpconfigurations bgppeers tiers globalnetworkpolicies networkpolicies \
            globalnetworksets networksets felixconfigurations; do
  echo
  echo "== calicoctl get $kind -A -o wide"
  "$ctl" get "$kind" -A -o wide
done
