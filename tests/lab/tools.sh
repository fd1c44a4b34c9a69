#!/bin/bash
# tools.sh - host-side tools some lab tests need, built once and cached in <target>/tools/bin.
# Prints the path of the binary on stdout; progress goes to stderr.
#
#   tests/lab/tools.sh vhost-device-vsock
#     rust-vmm's user-space vhost-user vsock backend (crates.io, ~80 s to build), pinned to the
#     version the reference recipe used (../shared/reference/user-vsock/): QEMU's
#     vhost-user-vsock-pci talks to it, and it exposes the guest's vsock as "hybrid vsock" UNIX
#     sockets. Built on the host; the test copies it into the container.
#
# Knobs: CARGO (cargo binary; cargo sets it for tests), CARGO_TARGET_DIR, VHOST_DEVICE_VSOCK
# (use this binary instead of building one).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
TOOLS=$TARGET_DIR/tools
CARGO=${CARGO:-cargo}

case "${1:-}" in
  vhost-device-vsock)
    if [ -n "${VHOST_DEVICE_VSOCK:-}" ]; then echo "$VHOST_DEVICE_VSOCK"; exit 0; fi
    crate=vhost-device-vsock version=0.3.0 bin=vhost-device-vsock
    ;;
  *) echo "usage: $0 vhost-device-vsock" >&2; exit 2;;
esac

out=$TOOLS/bin/$bin
stamp=$TOOLS/.$crate-$version
mkdir -p "$TOOLS"
# one build at a time (parallel test binaries, other checkouts sharing the target dir)
exec 8>>"$TOOLS/.lock"
flock -w 1800 8 || { echo "tools.sh: timed out waiting for $TOOLS/.lock" >&2; exit 1; }
if [ -x "$out" ] && [ -e "$stamp" ]; then echo "$out"; exit 0; fi
t0=$(date +%s)
echo "tools.sh: cargo install $crate $version into $TOOLS (once, ~80 s; log: $TOOLS/$crate.log)" >&2
# its own build directory, so the project's target dir is not locked meanwhile
if ! "$CARGO" install --locked --quiet "$crate" --version "=$version" --root "$TOOLS" \
      --target-dir "$TOOLS/build" > "$TOOLS/$crate.log" 2>&1; then
  tail -30 "$TOOLS/$crate.log" >&2
  echo "tools.sh: cargo install $crate failed" >&2
  exit 1
fi
rm -rf "$TOOLS/build"
: > "$stamp"
echo "tools.sh: $crate $version built in $(( $(date +%s) - t0 )) s" >&2
echo "$out"
