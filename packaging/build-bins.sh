#!/bin/bash
# Build the three binaries as they ship, into one directory (default target/dist), which
# is what `make install`, `make deb` and `make rpm` package and what bench/ measures.
#
# virt-systemd-libvirt links libvirt.so, so it is a normal dynamic binary. virt-systemd and
# virt-systemd-hook are static-pie glibc binaries unless --dynamic: the hook runs on every
# libvirt lifecycle event and the CLI on every command, and without the dynamic loader they
# start in ~0.35 ms less here (bench/rewrite-vs-xmlstarlet.sh, bench/hook-latency.sh). Their
# code paths make no NSS lookups (zbus links getpwuid_r for D-Bus servers' peer credentials;
# both binaries are only bus clients), so they need nothing of glibc at run time; the price
# is that a glibc update reaches them only when they are rebuilt, as with any static binary.
#
# Usage: packaging/build-bins.sh [--profile release] [--out DIR] [--dynamic]
# Env: CARGO (cargo binary), CARGO_TARGET_DIR, CARGO_BUILD_FLAGS (extra flags, e.g. --frozen).
set -euo pipefail
profile=release
out=
static=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --dynamic) static=0; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-bins.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
src=$(cd "$(dirname "$0")/.." && pwd)
tdir=${CARGO_TARGET_DIR:-$src/target}
case "$tdir" in /*) ;; *) tdir=$src/$tdir ;; esac
out=${out:-$tdir/dist}
cargo=${CARGO:-cargo}
# cargo's directory for a profile: dev builds land in debug/.
pdir=$profile
[ "$profile" = dev ] && pdir=debug
read -r -a extra <<<"${CARGO_BUILD_FLAGS:-}"

cd "$src"
"$cargo" build --profile "$profile" --locked "${extra[@]}" --bin virt-systemd-libvirt
lean=(--bin virt-systemd --bin virt-systemd-hook)
if [ "$static" = 1 ]; then
  host=$(rustc -vV | sed -n 's/^host: //p')
  # With --target, RUSTFLAGS reach only the target's crates, not build scripts or proc
  # macros (which cannot be static).
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "$cargo" build --profile "$profile" --locked "${extra[@]}" --target "$host" "${lean[@]}"
  leandir=$tdir/$host/$pdir
else
  "$cargo" build --profile "$profile" --locked "${extra[@]}" "${lean[@]}"
  leandir=$tdir/$pdir
fi
mkdir -p "$out"
install -m 0755 "$tdir/$pdir/virt-systemd-libvirt" "$leandir/virt-systemd" \
  "$leandir/virt-systemd-hook" "$out/"
if [ "$static" = 1 ]; then
  for b in virt-systemd virt-systemd-hook; do
    if readelf -d "$out/$b" | grep -q NEEDED; then
      echo "build-bins.sh: $b is not static:" >&2
      readelf -d "$out/$b" | grep NEEDED >&2
      exit 1
    fi
  done
fi
echo "$out"
