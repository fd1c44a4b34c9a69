#!/bin/bash
# rootfs.sh - build the lab's root filesystem for $SUITE into $ROOT (run by lab-up.sh when the
# cached one is missing or was built from another recipe). Everything that ends up in the cached
# tree is made here: any change to this file changes the recipe key and forces a rebuild.
#
# Contents: Debian minbase + systemd (PID 1), dbus, machined (systemd-container), libvirt
# daemon + clients, QEMU (x86, TCG is enough), busybox-static and cpio for test initramfs,
# ssh (virt-systemd ssh), vhost-device-vsock where Debian has it
# images, man-db and bash-completion (tests/lab_package.rs checks the .deb's man pages and
# completions), dbus-user-session (a user manager's bus: the per-user machined needs it), and out of the kernel package only vmlinuz plus a few modules (no initramfs-tools).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || lab_die "must run as root"
KEY=${1:?recipe key}
NEW=$ROOT.new
rm -rf "$NEW"
mkdir -p "$STATE"

lab_log "debootstrap $SUITE (log: $STATE/debootstrap.log)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,systemd-container,procps \
  "$SUITE" "$NEW" "$MIRROR" > "$STATE/debootstrap.log" 2>&1 \
  || { tail -20 "$STATE/debootstrap.log" >&2; lab_die "debootstrap failed"; }

echo "deb $MIRROR $SUITE main" > "$NEW/etc/apt/sources.list"
# sid's InRelease carries Valid-Until; a mirror copy can lag behind that
echo 'Acquire::Check-Valid-Until "false";' > "$NEW/etc/apt/apt.conf.d/99lab-no-valid-until"
# no daemon may start inside the chroot
printf '#!/bin/sh\nexit 101\n' > "$NEW/usr/sbin/policy-rc.d"; chmod 755 "$NEW/usr/sbin/policy-rc.d"

lab_log "installing libvirt, QEMU, busybox (log: $STATE/apt.log)"
chroot "$NEW" env -i PATH="$CT_PATH" HOME=/root DEBIAN_FRONTEND=noninteractive LC_ALL=C bash -euc '
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    libvirt-daemon-system libvirt-clients qemu-system-x86 busybox-static cpio xz-utils zstd \
    man-db bash-completion dbus-user-session openssh-client >/dev/null
  # The user-space vsock backend, where Debian packages it (sid: the session VMs test).
  if apt-cache show vhost-device-vsock >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends vhost-device-vsock >/dev/null
  fi
  # Kernel for test VMs: only vmlinuz, the config and a few modules out of the .debs. On sid
  # linux-image-X is a meta package: vmlinuz is in linux-binary-X, the modules in
  # linux-modules-X.
  cd /tmp && rm -f ./*.deb
  KPKG=$(apt-cache depends linux-image-amd64 | awk "/Depends: linux-image-/{print \$2; exit}")
  PARTS=$(apt-cache depends "$KPKG" | awk "/Depends: linux-(binary|modules|base)-/{print \$2}")
  apt-get download -qq "$KPKG" $PARTS
  B=/var/lib/libvirt/boot; rm -rf "$B"; mkdir -p "$B/modules" /tmp/k
  for d in ./*.deb; do dpkg-deb -x "$d" /tmp/k; done
  V=$(find /tmp/k -name "vmlinuz*" -type f | head -1)
  [ -n "$V" ] || { echo "no vmlinuz in $KPKG $PARTS"; exit 1; }
  cp "$V" "$B/vmlinuz"
  C=$(find /tmp/k -name "config-*" -type f | head -1)
  if [ -n "$C" ]; then cp "$C" "$B/kernel-config"; else : > "$B/kernel-config"; fi
  echo "$KPKG" > "$B/kernel-package"
  # modules test guests may need (dmi-sysfs exposes /sys/firmware/dmi/entries when it is not
  # built in; vsock for guest-side tests; evdev and button for the ACPI power button), decompressed
  for m in dmi-sysfs vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport evdev button; do
    f=$(find /tmp/k -name "$m.ko*" | head -1)
    [ -n "$f" ] || continue
    case "$f" in
      *.xz) xz -dc "$f" > "$B/modules/$m.ko";;
      *.zst) zstd -qdc "$f" > "$B/modules/$m.ko";;
      *) cp "$f" "$B/modules/$m.ko";;
    esac
  done
  rm -rf /tmp/k ./*.deb
  apt-get clean
  rm -rf /var/lib/apt/lists/*
' > "$STATE/apt.log" 2>&1 || { tail -20 "$STATE/apt.log" >&2; lab_die "package install failed"; }
rm -f "$NEW/usr/sbin/policy-rc.d"

# Static configuration of the cached tree.
# no console gettys in a --console=passive container
ln -sf /dev/null "$NEW/etc/systemd/system/console-getty.service"
# libvirt's default NAT network is of no use here (the container has only loopback)
rm -f "$NEW/etc/libvirt/qemu/networks/autostart/"*.xml
cat >> "$NEW/etc/libvirt/qemu.conf" <<'CONF'
# --- virt-systemd lab ---
# no AppArmor/SELinux labelling inside the container
security_driver = "none"
CONF

echo "$KEY" > "$NEW/.lab-recipe"
rm -rf "$ROOT"
mv "$NEW" "$ROOT"
lab_log "rootfs ready: $ROOT ($(du -sh "$ROOT" | cut -f1))"
