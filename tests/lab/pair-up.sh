#!/bin/bash
# pair-up.sh - bring up the two-host lab of $SUITE: hosts a and b, two lab containers (as
# lab-up.sh makes them, LAB_HOST=a and b) booted side by side from the same cached root, each
# from a cgroup of its own. They share $LAB_PAIR, seen inside at /srv/vsd-lab:
#   /srv/vsd-lab/mig/         migration sockets (virsh migrate --migrateuri unix:///srv/vsd-lab/mig/…)
#   /srv/vsd-lab/HOST/libvirt each host's /run/libvirt: the other host's libvirtd is
#                             qemu+unix:///system?socket=/srv/vsd-lab/HOST/libvirt/libvirt-sock
# Takes the lab lock once for both (unless LAB_LOCK_HELD=1); tears both down when a step fails.
# Tear down with pair-down.sh. Run commands inside with LAB_HOST=a|b ct.sh CMD….
set -euo pipefail
unset LAB_HOST
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || lab_die "must run as root"
mkdir -p "$LAB_DIR"
lab_lock
export LAB_LOCK_HELD=1
trap 'rc=$?; if [ $rc != 0 ]; then echo "pair-up failed (exit $rc): tearing down" >&2; "$LAB_SRC/pair-down.sh" >&2 || true; fi' EXIT
# a pair left behind by a killed session: down first, then a clean shared directory
if [ "${LAB_FRESH:-0}" = 1 ] || [ -e "$LAB_PAIR" ]; then "$LAB_SRC/pair-down.sh" >&2; fi
# the rootfs once, before the hosts boot from it side by side (a no-op when cached)
LAB_HOST=a "$LAB_SRC/lab-up.sh" --rootfs-only
# LAB_LIBVIRT_CGROUPS=1: hugetlb in the host's root, for both hosts (each enables it in its own
# cgroup); pair-down.sh puts the root back once both are down
CG2=$(lab_cg2)
mkdir -p "$STATE-pair"
if [ ! -e "$STATE-pair/cgroup.orig" ]; then
  if grep -qw hugetlb "$CG2/cgroup.subtree_control"; then echo 1; else echo 0; fi > "$STATE-pair/cgroup.orig"
fi
if [ "${LAB_LIBVIRT_CGROUPS:-0}" = 1 ]; then
  grep -qw hugetlb "$CG2/cgroup.controllers" || lab_die "no hugetlb controller in $CG2: LAB_LIBVIRT_CGROUPS=1 cannot work here"
  echo +hugetlb > "$CG2/cgroup.subtree_control"
fi
mkdir -p "$LAB_PAIR"
pids=()
for h in a b; do
  LAB_HOST=$h "$LAB_SRC/lab-up.sh" & pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc = 0 ] || lab_die "a host of the pair did not come up"
trap - EXIT
echo "lab pair up: LAB_HOST=a|b SUITE=$SUITE $LAB_SRC/ct.sh CMD..."
