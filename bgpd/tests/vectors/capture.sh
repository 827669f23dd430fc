#!/bin/sh
# Captures BIRD 2's OPEN, KEEPALIVE, UPDATEs, End-of-RIBs and a NOTIFICATION
# into OUT_DIR (default: a new temp dir) using two throwaway network
# namespaces joined by a veth pair. Needs root, bird (Debian bird2), python3.
# Usage: sh capture.sh [OUT_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d)}
a=bgpcap-$$a
b=bgpcap-$$b
work=$(mktemp -d)
cleanup() {
    [ -f "$work/bird.pid" ] && kill "$(cat "$work/bird.pid")" 2>/dev/null || true
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add va netns "$a" type veth peer name vb netns "$b"
ip -n "$a" link set lo up
ip -n "$a" link set va up
ip -n "$a" addr add 192.0.2.1/24 dev va
ip -n "$b" link set lo up
ip -n "$b" link set vb up
ip -n "$b" addr add 192.0.2.2/24 dev vb
ip netns exec "$a" bird -f -c "$here/bird.conf" -s "$work/bird.ctl" >"$work/bird.log" 2>&1 &
echo $! >"$work/bird.pid"
sleep 3
ip netns exec "$b" python3 "$here/capture_client.py" "$out"
echo "vectors in $out"
