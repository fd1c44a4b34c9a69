#!/bin/bash
# lab-down.sh [--purge] - tear the lab of $SUITE down: destroy its domains, power the container
# off (SIGKILL to its PID 1 if it does not stop), remove nspawn's leftovers, put the host's
# cgroup toggle back, and check that no process of the lab is left. --purge also deletes the
# cached root filesystem and state. Safe to run any number of times.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || lab_die "must run as root"
mkdir -p "$STATE"
lab_lock
rc=0

P=$(cat "$STATE/nspawn.pid" 2>/dev/null || true)
if L=$(lab_leader); then
  lab_log "stopping container $MACHINE (leader $L)"
  for d in $(ct timeout 20 virsh list --name 2>/dev/null); do
    ct timeout 20 virsh destroy "$d" >/dev/null 2>&1 && lab_log "destroyed domain $d"
  done
  ct systemctl poweroff >/dev/null 2>&1 || true
  for i in $(seq 1 300); do
    lab_alive "$P" || break
    if [ "$i" = 100 ]; then
      # slow: say what systemd inside is still doing
      lab_log "container still powering off after 10 s: $(ct timeout 3 systemctl list-jobs --no-legend --no-pager 2>&1 | grep -v ' waiting' | tr '\n' ';' | cut -c1-600)"
    fi
    sleep 0.1
  done
  if lab_alive "$P"; then
    lab_log "container did not power off in 30 s: killing its PID 1; what was left:"
    NS=$(cat "$STATE/pidns" 2>/dev/null || true)
    for d in /proc/[0-9]*; do
      [ -n "$NS" ] && [ "$(readlink "$d/ns/pid" 2>/dev/null)" = "$NS" ] || continue
      lab_log "  pid ${d#/proc/} $(cut -d' ' -f3 "$d/stat" 2>/dev/null) $(cat "$d/comm" 2>/dev/null) wchan=$(cat "$d/wchan" 2>/dev/null)"
    done
    lab_log "  nspawn $P: state $(cut -d' ' -f3 "/proc/$P/stat" 2>/dev/null) wchan=$(cat "/proc/$P/wchan" 2>/dev/null) children: $(pgrep -P "$P" | tr '\n' ' ')"
    for t in /proc/"$P"/task/*; do lab_log "  nspawn task ${t##*/}: $(tr '\n' '|' < "$t/stack" 2>/dev/null | cut -c1-300)"; done
    kill -KILL "$L" 2>/dev/null
    for _ in $(seq 1 100); do lab_alive "$P" || break; sleep 0.1; done
    lab_alive "$P" && { kill -KILL "$P" 2>/dev/null; sleep 0.5; }
  fi
  lab_log "container stopped"
elif [ -n "$P" ] && lab_alive "$P" && [ "$(cat "/proc/$P/comm" 2>/dev/null)" = systemd-nspawn ]; then
  lab_log "nspawn $P without a container PID 1: killing it"
  kill -KILL "$P"; sleep 0.5
fi

# nspawn cannot remove this when /run is not a tmpfs ("Attempted to remove disk file system")
rm -rf "/run/systemd/nspawn/propagate/$MACHINE"
rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null || true

# the cgroup toggle back to what it was before the first lab-up
if [ -e "$STATE/cgroup.orig" ]; then
  CG2=$(lab_cg2)
  orig=$(cat "$STATE/cgroup.orig")
  if [ "$orig" = 1 ]; then echo +hugetlb; else echo -hugetlb; fi > "$CG2/cgroup.subtree_control" 2>/dev/null
  if grep -qw hugetlb "$CG2/cgroup.subtree_control"; then now=1; else now=0; fi
  [ "$now" = "$orig" ] || { lab_log "could not put $CG2/cgroup.subtree_control back (hugetlb: $now, was $orig)"; rc=1; }
  rm -f "$STATE/cgroup.orig"
fi

# nothing of ours may be left: no nspawn (lab-up refuses to start beside another one, so any
# is ours), no process in the container's PID namespace, no process in nspawn's cgroups
# (a host of the two-host lab: only an nspawn started from its own cgroup is its)
for p in $(lab_nspawns); do
  if [ -n "$LAB_HOST" ] && [ "$(lab_nspawn_parent "$p" || true)" != "$LAB_CGROUP" ] && [ "$p" != "$P" ]; then
    continue
  fi
  lab_log "LEFT BEHIND: systemd-nspawn pid $p ($(tr '\0' ' ' < "/proc/$p/cmdline"))"; rc=1
done
NS=$(cat "$STATE/pidns" 2>/dev/null || true)
if [ -n "$NS" ]; then
  for d in /proc/[0-9]*; do
    if [ "$(readlink "$d/ns/pid" 2>/dev/null)" = "$NS" ]; then
      lab_log "LEFT BEHIND: pid ${d#/proc/} ($(cat "$d/comm" 2>/dev/null))"; rc=1
    fi
  done
fi
# nspawn's cgroups under the host's root (hybrid host: cgroup2 and the name=systemd v1
# hierarchy), or under the host's own cgroup in the two-host lab: they must be empty now;
# remove them, deepest first
for top in "$(lab_cg2)" /sys/fs/cgroup/systemd; do
  top=$top${LAB_CGROUP:+/$LAB_CGROUP}
  for cg in "$top/payload" "$top/supervisor"; do
    [ -d "$cg" ] || continue
    while read -r d; do
      if [ -s "$d/cgroup.procs" ]; then
        lab_log "LEFT BEHIND in $d: $(tr '\n' ' ' < "$d/cgroup.procs")"; rc=1
      else
        rmdir "$d" 2>/dev/null || true
      fi
    done < <(find "$cg" -depth -type d)
  done
done
if [ -n "$LAB_CGROUP" ]; then
  for top in "$(lab_cg2)" /sys/fs/cgroup/systemd; do
    [ -d "$top/$LAB_CGROUP" ] || continue
    if [ -s "$top/$LAB_CGROUP/cgroup.procs" ]; then
      lab_log "LEFT BEHIND in $top/$LAB_CGROUP: $(tr '\n' ' ' < "$top/$LAB_CGROUP/cgroup.procs")"; rc=1
    else
      rmdir "$top/$LAB_CGROUP" 2>/dev/null || { lab_log "cannot remove $top/$LAB_CGROUP"; rc=1; }
    fi
  done
  # this host's /run/libvirt (sockets, pid files) lived in the pair's directory
  { [ -z "$P" ] || ! lab_alive "$P"; } && rm -rf "${LAB_PAIR:?}/$LAB_HOST"
fi
rm -f "$STATE/nspawn.pid" "$STATE/leader.pid" "$STATE/pidns" "$STATE/cgroups"

if [ "${1:-}" = --purge ]; then
  rm -rf "$ROOT" "$ROOT.new" "$STATE"
  echo "purged $ROOT" >&2
fi
exit $rc
