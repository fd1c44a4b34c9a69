#!/bin/sh
# full-vsock-overlay.sh OUT - runs inside the lab container: a small gzip'd cpio that
# tests/lab_full.rs appends to the full guest's image (the kernel unpacks concatenated archives
# in order) for the guest on the user-space vsock backend: the lab kernel's vsock modules, a
# static busybox and /vsd/init, which loads the modules and execs systemd (kernel command line
# `rdinit=/vsd/init`). They must be loaded before systemd starts: the image has no kernel
# modules and no insmod, and systemd-ssh-generator, which runs before any unit could load them,
# binds sshd to vsock port 22 only when AF_VSOCK and /dev/vsock are already there.
set -eu
OUT=$1
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
chmod 755 "$D"
mkdir -p "$D/vsd/modules"
cp /bin/busybox "$D/vsd/busybox"
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
  f=/var/lib/libvirt/boot/modules/$m.ko
  if [ -e "$f" ]; then cp "$f" "$D/vsd/modules/"; fi
done
cat > "$D/vsd/init" <<'INIT'
#!/vsd/busybox sh
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
  [ -e /vsd/modules/$m.ko ] || continue
  /vsd/busybox insmod /vsd/modules/$m.ko || echo "vsd-init: insmod $m failed"
done
exec /usr/lib/systemd/systemd "$@"
INIT
chmod 755 "$D/vsd/init"
# no entry for "." itself: it would set the guest's / to this directory's mode
(cd "$D" && find . -mindepth 1 | cpio -o -H newc --quiet | gzip -1) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
