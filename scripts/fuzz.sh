#!/usr/bin/env bash
# Runs bgpd's cargo-fuzz targets (framing, open, update, fsm), each for
# SECONDS (default 600), on the seed corpus in bgpd/fuzz/corpus.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# libFuzzer needs unstable rustc flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them (no other toolchain can be installed here).
set -euo pipefail
cd "$(dirname "$0")/../bgpd/fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(framing open update fsm)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1
done
