#!/bin/bash
# packaging/debian/build-deb.sh - build the virt-systemd .deb with dpkg-deb from a staging
# tree made by packaging/install.sh (no debhelper, no cargo-deb). `make deb` runs it after
# `make build` (packaging/build-bins.sh); tests/lab_package.rs runs it on the test build's binaries.
#
#   packaging/debian/build-deb.sh [--bindir target/dist] [--out target/debian]
#
# Prints the path of the .deb on stdout. Depends: comes from dpkg-shlibdeps on the staged
# binaries (so it matches the libc and libvirt they were linked against). DEB_REVISION
# (default 1) is the Debian revision; SOURCE_DATE_EPOCH makes the archive reproducible.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BINDIR=$SRC/target/dist
OUT=$SRC/target/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) BINDIR=$(cd "${2:?}" && pwd); shift 2;;
    --out) OUT=${2:?}; shift 2;;
    *) echo "build-deb.sh: unknown argument $1" >&2; exit 2;;
  esac
done

PKG=virt-systemd
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/Cargo.toml" | head -1)
[ -n "$VERSION" ] || { echo "build-deb.sh: no version in Cargo.toml" >&2; exit 1; }
DEBVER=$VERSION-${DEB_REVISION:-1}
ARCH=$(dpkg --print-architecture)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$OUT/$PKG-$DEBVER-$ARCH
ROOT=$WORK/root
rm -rf "$WORK"
mkdir -p "$ROOT/DEBIAN"

INSTALL=("$SRC/packaging/install.sh" --bindir "$BINDIR" --gzip-man
         --zsh-completions /usr/share/zsh/vendor-completions)
"${INSTALL[@]}" --strip --destdir "$ROOT" >&2

# Depends from the binaries' dynamic sections.
mkdir -p "$WORK/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" > "$WORK/shlibs/debian/control"
mapfile -t ELFS < <("${INSTALL[@]}" --list | awk '$1 == "bin" { print $3 }')
SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O "${ELFS[@]/#/-e$ROOT}" 2>"$WORK/shlibdeps.log" \
         | sed -n 's/^shlibs:Depends=//p') \
  || { cat "$WORK/shlibdeps.log" >&2; exit 1; }
[ -n "$SHLIBS" ] || { echo "build-deb.sh: dpkg-shlibdeps found no dependencies" >&2; cat "$WORK/shlibdeps.log" >&2; exit 1; }

SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<EOF
Package: $PKG
Version: $DEBVER
Architecture: $ARCH
Maintainer: virt-systemd maintainers <virt-systemd@localhost>
Installed-Size: $SIZE
Depends: $SHLIBS
Recommends: libvirt-daemon-system (>= 6.5.0), systemd-container
Enhances: libvirt-daemon-system
Section: admin
Priority: optional
Description: make libvirt/QEMU virtual machines first-class systemd citizens
 virt-systemd wires libvirt domains into systemd's VM interface.
 "virt-systemd rewrite" and "virt-systemd enable" add credentials (SMBIOS
 OEM strings or fw_cfg), a vsock device, kernel command line extensions,
 SSH keys, hostname, machine ID and the readiness socket to a domain's XML,
 losslessly and reversibly.
 .
 The libvirt hook, installed as /etc/libvirt/hooks/qemu.d/50-virt-systemd,
 registers each running VM with systemd-machined and unregisters it when
 it stops, so machinectl, systemctl status and systemd-cgls show VMs like
 containers. The socket-activated readiness listener records what guests
 report over AF_VSOCK (READY=1, STATUS=, SSH availability) for
 "virt-systemd wait-ready" and "virt-systemd status".
EOF
"${INSTALL[@]}" --list | awk '$1 == "conf" { print $3 }' > "$ROOT/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "$SRC/packaging/debian/$s" "$ROOT/DEBIAN/$s"
done
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
   | xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums" "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles"

# reproducible: fixed mtimes
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

DEB=$OUT/${PKG}_${DEBVER}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >&2
echo "$DEB"
