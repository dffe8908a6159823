#!/usr/bin/env bash
# The one release build: the release profile (Cargo.toml), statically linked, for the
# host's x86_64 Linux target. Images and benchmarks both use it, so each binary is
# compiled once.
#
#   scripts/release-build.sh [cargo build arguments]   build
#   scripts/release-build.sh --print-dir                where the binaries land
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
if [ "${1:-}" = --print-dir ]; then
  dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  echo "$dir/$triple/release"
  exit 0
fi
# With an explicit --target the flag reaches our binaries but not build scripts or
# proc macros, which must stay dynamic.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked -q --release --target "$triple" "$@"
