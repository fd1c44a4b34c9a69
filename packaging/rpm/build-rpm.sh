#!/bin/bash
# packaging/rpm/build-rpm.sh - build the virt-systemd RPM with rpmbuild from binaries that are
# already built (`make rpm` builds them first): a source tarball of the working tree as
# Source0, %install = make install, as on a distribution's build host.
#
#   packaging/rpm/build-rpm.sh [--bindir target/dist] [--out target/rpm]
#
# Prints the path of the .rpm on stdout. On hosts without systemd-rpm-macros (Debian's rpm
# package) the macros come from packaging/rpm/macros.fallback, and BuildRequires are not
# checked (--nodeps: the rpm database of a Debian host is empty).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BINDIR=$SRC/target/dist
OUT=$SRC/target/rpm
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) BINDIR=$(cd "${2:?}" && pwd); shift 2;;
    --out) OUT=${2:?}; shift 2;;
    *) echo "build-rpm.sh: unknown argument $1" >&2; exit 2;;
  esac
done
command -v rpmbuild >/dev/null || { echo "build-rpm.sh: rpmbuild not found (Debian: apt-get install rpm)" >&2; exit 1; }

SPEC=$SRC/packaging/rpm/virt-systemd.spec
VERSION=$(sed -n 's/^Version: *//p' "$SPEC")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/BUILD" "$OUT/BUILDROOT" "$OUT/SOURCES" "$OUT/RPMS" "$OUT/SRPMS"
mkdir -p "$OUT/SOURCES"

# Source0: the working tree (tracked and new files), without build output.
tar -C "$SRC" --exclude=./target --exclude=./.git --exclude='./fuzz/target' \
    --exclude='./fuzz/corpus' --exclude='./fuzz/artifacts' \
    --transform "s,^\.,virt-systemd-$VERSION," -czf "$OUT/SOURCES/virt-systemd-$VERSION.tar.gz" .

ARGS=(--define "_topdir $OUT" --define "prebuilt_bindir $BINDIR")
if [ -z "$(rpm --eval '%{?systemd_post:1}')" ]; then
  ARGS+=(--load "$SRC/packaging/rpm/macros.fallback" --nodeps)
fi
rpmbuild -bb "${ARGS[@]}" "$SPEC" > "$OUT/rpmbuild.log" 2>&1 \
  || { tail -40 "$OUT/rpmbuild.log" >&2; exit 1; }
find "$OUT/RPMS" -name '*.rpm' -print
