#!/bin/bash
# pair-down.sh - tear down both hosts of the two-host lab of $SUITE (lab-down.sh with
# LAB_HOST=b and a, side by side) and remove the pair's shared directory. Exits non-zero if
# either host left something behind. Safe to run any number of times.
set -uo pipefail
unset LAB_HOST
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || lab_die "must run as root"
mkdir -p "$LAB_DIR"
lab_lock
export LAB_LOCK_HELD=1
pids=()
for h in b a; do
  LAB_HOST=$h "$LAB_SRC/lab-down.sh" & pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
# the host's cgroup toggle back to what it was before pair-up.sh
if [ -e "$STATE-pair/cgroup.orig" ]; then
  CG2=$(lab_cg2)
  orig=$(cat "$STATE-pair/cgroup.orig")
  if [ "$orig" = 1 ]; then echo +hugetlb; else echo -hugetlb; fi > "$CG2/cgroup.subtree_control" 2>/dev/null
  if grep -qw hugetlb "$CG2/cgroup.subtree_control"; then now=1; else now=0; fi
  if [ "$now" = "$orig" ]; then
    rm -f "$STATE-pair/cgroup.orig"
  else
    echo "lab $SUITE pair: could not put $CG2/cgroup.subtree_control back (hugetlb: $now, was $orig)" >&2; rc=1
  fi
fi
if [ $rc = 0 ]; then
  rm -rf "$LAB_PAIR"
else
  echo "lab $SUITE pair: something was left behind; kept $LAB_PAIR" >&2
fi
exit $rc
