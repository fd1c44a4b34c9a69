#!/bin/bash
# full-image.sh - build (cached) the root filesystem of the full systemd guest used with
# LAB_FULL=1: Debian $SUITE minbase + systemd + openssh-server, packed as a zstd'd cpio that the
# guest kernel unpacks as its root (systemd runs as /init from it; no disk, no
# initramfs-tools). Prints the image's path on stdout: $LAB_DIR/images/full-$SUITE-HASH.cpio.zst
# (the lab sees $LAB_DIR/images at /opt/virt-systemd/images), HASH from the recipe (this file,
# full-report.sh, suite, mirror), so checkouts with different recipes sharing one lab cache do
# not rebuild each other's image; images of other recipes unused for a week are removed.
# Runs on the host.
#
# sshd is there for systemd's ssh-generator (systemd >= 256), which binds it to vsock port 22
# when the guest has a vsock device; Debian's own ssh.service (TCP) is disabled.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
[ "$(id -u)" = 0 ] || lab_die "must run as root"
mkdir -p "$LAB_DIR/images" "$STATE"
lab_need_mirror
KEY="$(cat "$LAB_SRC/guest/full-image.sh" "$LAB_SRC/guest/full-report.sh" | sha256sum | cut -d' ' -f1) $SUITE $MIRROR"
OUT=$LAB_DIR/images/full-$SUITE-$(echo "$KEY" | sha256sum | cut -c1-12).cpio.zst
find "$LAB_DIR/images" -maxdepth 1 -name "full-$SUITE*.cpio.zst*" -mtime +7 -delete 2>/dev/null || true
if [ -s "$OUT" ] && [ "$(cat "$OUT.key" 2>/dev/null)" = "$KEY" ]; then
  touch "$OUT" "$OUT.key"
  echo "$OUT"
  exit 0
fi

need=()
command -v cpio >/dev/null || need+=(cpio)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

T=$LAB_DIR/full-root-$SUITE
rm -rf "$T"
lab_log "full guest: debootstrap $SUITE (log: $STATE/full-debootstrap.log)"
debootstrap --variant=minbase --include=systemd,systemd-sysv,openssh-server "$SUITE" "$T" "$MIRROR" \
  > "$STATE/full-debootstrap.log" 2>&1 || { tail -20 "$STATE/full-debootstrap.log" >&2; lab_die "debootstrap failed"; }

# what systemd must set up from the credentials must not be preset in the image
rm -f "$T/etc/hostname" "$T/etc/machine-id" "$T/var/lib/dbus/machine-id"
# nothing may wait for a human on the console; no sshd on TCP (the guest has no network); no
# systemd-modules-load (no modules, no libkmod here: it would fail and leave the guest degraded)
for u in systemd-firstboot.service getty@tty1.service serial-getty@ttyS0.service console-getty.service \
         ssh.service ssh.socket systemd-modules-load.service; do
  ln -sf /dev/null "$T/etc/systemd/system/$u"
done
install -m 755 "$LAB_SRC/guest/full-report.sh" "$T/usr/local/sbin/vsd-report"
cat > "$T/etc/systemd/system/vsd-report.service" <<'UNIT'
[Unit]
Description=virt-systemd lab: report what systemd applied, then power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vsd-report

[Install]
WantedBy=multi-user.target
UNIT
ln -sf ../vsd-report.service "$T/etc/systemd/system/multi-user.target.wants/vsd-report.service"
ln -sf usr/lib/systemd/systemd "$T/init"
rm -rf "$T"/usr/share/{doc,man,info,locale}/* "$T"/var/cache/apt/*.bin "$T"/var/lib/apt/lists/*

(cd "$T" && find . | cpio -o -H newc --quiet | zstd -q -3 -T0) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$KEY" > "$OUT.key"
rm -rf "$T"
lab_log "full guest image: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
