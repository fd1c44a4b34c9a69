#!/bin/bash
# lab-up.sh - bring up the virt-systemd test lab: Debian $SUITE with systemd as PID 1 in a
# systemd-nspawn container (real dbus, systemd-machined, libvirtd, QEMU with TCG guests) on a
# host that does not run systemd. Idempotent: a running lab of the same suite and settings is
# reused; the root filesystem is cached under $LAB_DIR and rebuilt when rootfs.sh changes.
# With LAB_HOST=a|b, one host of the two-host lab (see pair-up.sh and lib.sh).
#
# Knobs: see lib.sh. Leaves the lab running; tear it down with lab-down.sh (always: it also
# puts the host's cgroup toggle back). Run one lab at a time: every nspawn started from the
# host's root cgroup lands in the same 'payload' cgroup, so two containers would share one
# systemd cgroup tree. lab-up.sh refuses to start next to any other systemd-nspawn.
#
# Inside the container:
#   /opt/virt-systemd/bin   the project's binaries ($LAB_BIN_DIR, read-only)
#   /opt/virt-systemd/lab   this directory (read-only): guest/ holds initramfs tools
#   /opt/virt-systemd/images  $LAB_DIR/images (read-only): guest images built on the host
#   /var/lib/libvirt/boot/  vmlinuz, kernel-config, modules/, tiny-initrd.img
# The root is a volatile overlay: everything written in the container is gone after lab-down.
# --rootfs-only: build (or check) the cached root filesystem, boot nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOTFS_ONLY=0
[ "${1:-}" = --rootfs-only ] && ROOTFS_ONLY=1
[ "$(id -u)" = 0 ] || lab_die "must run as root"
mkdir -p "$LAB_DIR" "$STATE"
: > "$STATE/timings.log"
lab_lock

# ---------------------------------------------------------------- host tools
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v nsenter >/dev/null || need+=(util-linux)
command -v bc >/dev/null || need+=(bc)
if [ ${#need[@]} -gt 0 ]; then
  echo "lab: installing host tools: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

lab_need_mirror
KEY="$(sha256sum < "$LAB_SRC/rootfs.sh" | cut -d' ' -f1) $SUITE $MIRROR"

# ---------------------------------------------------------------- already running?
if [ $ROOTFS_ONLY = 1 ]; then
  :
elif lab_leader >/dev/null; then
  if [ "${LAB_FRESH:-0}" != 1 ] && [ "$(cat "$STATE/cgroups" 2>/dev/null)" = "$LAB_LIBVIRT_CGROUPS" ] \
     && [ "$(cat "$ROOT/.lab-recipe" 2>/dev/null)" = "$KEY" ]; then
    lab_log "lab already running (leader $(lab_leader)), reusing it"
    exit 0
  fi
  lab_log "lab running with other settings (or LAB_FRESH=1): restarting it"
  LAB_LOCK_HELD=1 "$LAB_SRC/lab-down.sh"
fi
# one container on the host at a time; a host of the two-host lab only next to the other one
# (started from a cgroup of its own, so their payload cgroups differ)
for p in $( [ $ROOTFS_ONLY = 1 ] || lab_nspawns); do
  if [ -n "$LAB_HOST" ]; then
    parent=$(lab_nspawn_parent "$p" || true)
    case "$parent" in vsd-lab-$SUITE-[ab]) [ "$parent" != "$LAB_CGROUP" ] && continue;; esac
  fi
  lab_die "another systemd-nspawn is running (pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline")); stop it first (its lab-down.sh)"
done

# from here on a failure tears down what was started
trap 'rc=$?; if [ $rc != 0 ]; then echo "lab-up failed (exit $rc): tearing down" >&2; LAB_LOCK_HELD=1 "$LAB_SRC/lab-down.sh" >&2 || true; fi' EXIT

# ---------------------------------------------------------------- root filesystem
if [ "$(cat "$ROOT/.lab-recipe" 2>/dev/null)" != "$KEY" ]; then
  [ -e "$ROOT" ] && lab_log "cached rootfs is from another recipe: rebuilding"
  "$LAB_SRC/rootfs.sh" "$KEY"
else
  lab_log "cached rootfs ok ($ROOT)"
fi
if [ $ROOTFS_ONLY = 1 ]; then trap - EXIT; exit 0; fi

# ---------------------------------------------------------------- host cgroup2 toggle
CG2=$(lab_cg2)
if [ -n "$LAB_HOST" ]; then
  # The pair's nspawns start from cgroups of their own: the toggle is the host's root (set
  # by pair-up.sh) plus this host's own cgroup (after boot, below). Without it there, libvirt
  # finds no usable cgroup inside, whatever the host's root has.
  if [ "$LAB_LIBVIRT_CGROUPS" = 1 ] && ! grep -qw hugetlb "$CG2/cgroup.subtree_control"; then
    lab_die "LAB_LIBVIRT_CGROUPS=1: hugetlb is not enabled in $CG2 (pair-up.sh does that)"
  fi
else
  if [ ! -e "$STATE/cgroup.orig" ]; then
    if grep -qw hugetlb "$CG2/cgroup.subtree_control"; then echo 1; else echo 0; fi > "$STATE/cgroup.orig"
  fi
  if [ "$LAB_LIBVIRT_CGROUPS" = 1 ]; then
    grep -qw hugetlb "$CG2/cgroup.controllers" || lab_die "no hugetlb controller in $CG2: LAB_LIBVIRT_CGROUPS=1 cannot work here"
    echo +hugetlb > "$CG2/cgroup.subtree_control"
  else
    echo -hugetlb > "$CG2/cgroup.subtree_control" 2>/dev/null || true
  fi
fi
echo "$LAB_LIBVIRT_CGROUPS" > "$STATE/cgroups"

# ---------------------------------------------------------------- boot
mkdir -p /run/systemd/nspawn "$LAB_BIN_DIR" "$LAB_DIR/images"
rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
lab_log "booting container $MACHINE (LAB_LIBVIRT_CGROUPS=$LAB_LIBVIRT_CGROUPS)"
extra=()
if [ -n "$LAB_HOST" ]; then
  # the pair's shared directory, and this host's /run/libvirt where the other host sees it
  mkdir -p "$LAB_PAIR/mig" "$LAB_PAIR/$LAB_HOST/libvirt"
  chmod 1777 "$LAB_PAIR/mig"   # QEMU (libvirt-qemu) creates and opens the migration sockets
  # Migration needs hosts that libvirt tells apart: its host UUID (default: SMBIOS, the same
  # in both containers) and, for the logs, the hostname (the cached root has one). Given at
  # boot, as files over the root's: socket activation may start libvirtd early.
  mkdir -p "$LAB_PAIR/$LAB_HOST/etc"
  uuid=$(printf '%s' "$MACHINE" | md5sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
  { cat "$ROOT/etc/libvirt/libvirtd.conf"; echo "host_uuid = \"$uuid\""; } > "$LAB_PAIR/$LAB_HOST/etc/libvirtd.conf"
  echo "$MACHINE" > "$LAB_PAIR/$LAB_HOST/etc/hostname"
  extra=(--bind="$LAB_PAIR:$CT_PAIR" --bind="$LAB_PAIR/$LAB_HOST/libvirt:/run/libvirt"
         --bind-ro="$LAB_PAIR/$LAB_HOST/etc/libvirtd.conf:/etc/libvirt/libvirtd.conf"
         --bind-ro="$LAB_PAIR/$LAB_HOST/etc/hostname:/etc/hostname")
  for top in "$CG2" /sys/fs/cgroup/systemd; do
    [ "$top" = "$CG2" ] || [ -e "$top/cgroup.procs" ] || continue
    mkdir -p "$top/$LAB_CGROUP"
  done
fi
# fd 9 (the lock) must not live on in the container
(
  if [ -n "$LAB_HOST" ]; then
    for top in "$CG2" /sys/fs/cgroup/systemd; do
      [ -d "$top/$LAB_CGROUP" ] && echo "$BASHPID" > "$top/$LAB_CGROUP/cgroup.procs"
    done
  fi
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec setsid systemd-nspawn \
    -D "$ROOT" -M "$MACHINE" --register=no --keep-unit --console=passive \
    --volatile=overlay --private-network \
    --bind-ro="$LAB_BIN_DIR:$CT_BIN" --bind-ro="$LAB_SRC:/opt/virt-systemd/lab" \
    --bind-ro="$LAB_DIR/images:/opt/virt-systemd/images" "${extra[@]}" \
    -b > "$STATE/nspawn.log" 2>&1 < /dev/null 9>&-
) &
echo $! > "$STATE/nspawn.pid"
for _ in $(seq 1 200); do lab_leader >/dev/null && break; sleep 0.1; done
L=$(lab_leader) || { cat "$STATE/nspawn.log" >&2; lab_die "container did not start"; }
echo "$L" > "$STATE/leader.pid"
readlink "/proc/$L/ns/pid" > "$STATE/pidns"

for _ in $(seq 1 300); do
  ct test -S /run/systemd/private -a -S /run/dbus/system_bus_socket 2>/dev/null && break; sleep 0.1
done
st=$(ct timeout 90 systemctl is-system-running --wait 2>&1 || true)
lab_log "container up, system state: $st"
if [ "$st" != running ]; then
  ct systemctl --failed --no-pager >&2 || true
  [ "$st" = degraded ] || lab_die "container did not finish booting ($st)"
fi

if [ -n "$LAB_HOST" ] && [ "$LAB_LIBVIRT_CGROUPS" = 1 ]; then
  # hugetlb for the container, in this host's own cgroup: only now, as nspawn has left it
  # for 'supervisor' (a cgroup with processes cannot enable controllers for its children);
  # systemd inside learns of it by re-executing. libvirt looks at each domain start.
  echo +hugetlb > "$CG2/$LAB_CGROUP/cgroup.subtree_control"
  ct systemctl daemon-reexec
fi
ct systemctl start libvirtd.service
for _ in $(seq 1 100); do ct virsh -q version >/dev/null 2>&1 && break; sleep 0.1; done
ct virsh -q version >/dev/null || lab_die "libvirtd does not answer"
ct busctl call org.freedesktop.machine1 /org/freedesktop/machine1 \
  org.freedesktop.machine1.Manager ListMachines >/dev/null || lab_die "machined does not answer"
# the default test initramfs (busybox init that says hello on the serial console)
ct /opt/virt-systemd/lab/guest/mkinitrd.sh /var/lib/libvirt/boot/tiny-initrd.img \
  /opt/virt-systemd/lab/guest/tiny-init.sh

ct sh -c 'echo "systemd: $(systemctl --version | head -1)"; echo "libvirt: $(libvirtd --version)";
  echo "qemu: $(qemu-system-x86_64 --version | head -1)"; echo "guest kernel: $(cat /var/lib/libvirt/boot/kernel-package)"' \
  > "$STATE/versions" 2>&1 || true
lab_log "lab ready: $(tr '\n' ';' < "$STATE/versions")"
trap - EXIT
echo "lab up: run commands in it with: ${LAB_HOST:+LAB_HOST=$LAB_HOST }SUITE=$SUITE $LAB_SRC/ct.sh CMD..."
