#!/bin/sh
# mkinitrd.sh OUT INIT [HOSTFILE=GUESTPATH]... - runs inside the lab container: build a gzip'd
# newc initramfs with busybox (static, at /bin/busybox), INIT as /init, the kernel modules the
# lab extracted (/var/lib/libvirt/boot/modules/*.ko -> /lib/modules/) and any extra files.
set -eu
OUT=$1 INIT=$2; shift 2
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
mkdir -p "$D/bin" "$D/proc" "$D/sys" "$D/dev" "$D/lib/modules" "$D/tmp"
cp /bin/busybox "$D/bin/busybox"
ln -s busybox "$D/bin/sh"
cp "$INIT" "$D/init"; chmod 755 "$D/init"
cp /var/lib/libvirt/boot/modules/*.ko "$D/lib/modules/" 2>/dev/null || true
for f in "$@"; do
  mkdir -p "$D/$(dirname "${f#*=}")"; cp "${f%%=*}" "$D/${f#*=}"
done
mkdir -p "$(dirname "$OUT")"
(cd "$D" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
