#!/usr/bin/env bash
# Runs every test: installs the system packages the tests need, checks
# formatting, then runs the whole suite (unit, datastore, netns, interop).
# Kernel-level tests need root; run as root (CI does) or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh
install_packages all

cargo fmt --all --check
# A clean build gains nothing from incremental compilation, and its cache
# is 3 GB of disk a CI machine may not have (see Cargo.toml, profile.dev).
export CARGO_INCREMENTAL=0
cargo test --workspace --locked
