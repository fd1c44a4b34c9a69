# shellcheck shell=bash
# Shared settings and helpers of the virt-systemd test lab (sourced by lab-up.sh, lab-down.sh,
# ct.sh). See README.md in this directory.
#
# Knobs (environment):
#   SUITE=trixie|bookworm|sid   Debian suite of the lab container (default trixie)
#   LAB_DIR                     cache and state directory (default: <cargo target dir>/lab)
#   LAB_BIN_DIR                 host directory bind-mounted read-only at /opt/virt-systemd/bin
#                               (default: <cargo target dir>/debug)
#   LAB_LIBVIRT_CGROUPS=0|1     1: enable +hugetlb on the host's cgroup2 root so libvirt finds a
#                               usable cgroup v2 and registers its domains with machined itself
#   LAB_LOCK                    host-wide lock file (default /run/lock/virt-systemd-lab.lock)
#   LAB_LOCK_HELD=1             the caller already holds LAB_LOCK (the Rust helper does)
#   LAB_FRESH=1                 lab-up.sh restarts a running lab instead of reusing it (the Rust
#                               helper does: a lab running when it gets the lock is stale)
#   MIRROR                      Debian mirror for debootstrap (default: the one the host's apt
#                               uses, from /etc/apt/sources.list{,.d/*.list,.d/*.sources})
#   LAB_HOST=a|b                one host of the two-host lab (pair-up.sh sets it): its own
#                               machine name, state directory and parent cgroup, and the pair's
#                               shared directory; unset: the one-host lab

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LAB_SRC/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
SUITE=${SUITE:-trixie}
case "$SUITE" in trixie|bookworm|sid) ;; *) echo "lab: unsupported SUITE=$SUITE (trixie, bookworm, sid)" >&2; exit 2;; esac
LAB_DIR=${LAB_DIR:-$TARGET_DIR/lab}
LAB_BIN_DIR=${LAB_BIN_DIR:-$TARGET_DIR/debug}
MIRROR=${MIRROR:-}
LAB_LIBVIRT_CGROUPS=${LAB_LIBVIRT_CGROUPS:-0}
LAB_LOCK=${LAB_LOCK:-/run/lock/virt-systemd-lab.lock}
ROOT=$LAB_DIR/root-$SUITE
STATE=$LAB_DIR/state-$SUITE
MACHINE=vsd-lab-$SUITE
# The two-host lab (pair-up.sh): hosts a and b share the cached root (each boots its own
# volatile overlay of it) and $LAB_PAIR, seen inside at $CT_PAIR: the migration sockets in
# mig/, and each host's /run/libvirt at HOST/libvirt, so the other host reaches its libvirtd
# socket. Each nspawn starts from a cgroup of its own, $LAB_CGROUP under the host's root:
# nspawn puts the container in 'payload' next to its own cgroup, so two started from the same
# cgroup would share one payload.
LAB_HOST=${LAB_HOST:-}
LAB_PAIR=$LAB_DIR/pair-$SUITE
CT_PAIR=/srv/vsd-lab
LAB_CGROUP=
if [ -n "$LAB_HOST" ]; then
  case "$LAB_HOST" in a|b) ;; *) echo "lab: unsupported LAB_HOST=$LAB_HOST (a, b)" >&2; exit 2;; esac
  STATE=$LAB_DIR/state-$SUITE-$LAB_HOST
  MACHINE=vsd-lab-$SUITE-$LAB_HOST
  LAB_CGROUP=vsd-lab-$SUITE-$LAB_HOST
fi
# where the container sees the project's binaries
CT_BIN=/opt/virt-systemd/bin
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

lab_log() { printf '[lab %s %6.1fs] %s\n' "$SUITE${LAB_HOST:+-$LAB_HOST}" "$(lab_elapsed)" "$*" | tee -a "$STATE/timings.log" >&2; }
LAB_T0=$(date +%s%N)
lab_elapsed() { echo "scale=1; ($(date +%s%N) - $LAB_T0) / 1000000000" | bc; }
lab_die() { echo "lab $SUITE${LAB_HOST:+-$LAB_HOST}: ERROR: $*" >&2; exit 1; }

# Take the host-wide lab lock on fd 9 unless the caller holds it. Released when the script exits.
lab_lock() {
  [ "${LAB_LOCK_HELD:-0}" = 1 ] && return 0
  mkdir -p "$(dirname "$LAB_LOCK")"
  exec 9>>"$LAB_LOCK"
  flock -w "${LAB_LOCK_TIMEOUT:-1800}" 9 || lab_die "timed out waiting for $LAB_LOCK (another lab session)"
}

# The host cgroup2 hierarchy (pure v2 host, or the 'unified' part of a hybrid one).
lab_cg2() { if [ -e /sys/fs/cgroup/cgroup.controllers ]; then echo /sys/fs/cgroup; else echo /sys/fs/cgroup/unified; fi; }

# PID $1 exists and is not a zombie. This host's PID 1 reaps orphans late, at times 30 s after
# they exited (seen: a powered-off container's nspawn in state Z all that time): a zombie is done.
lab_alive() {
  local s
  s=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# PIDs of the systemd-nspawn processes that still run (zombies left out).
lab_nspawns() {
  local p
  for p in $(pgrep -x systemd-nspawn || true); do lab_alive "$p" && echo "$p"; done
  return 0
}

# The cgroup a running systemd-nspawn PID $1 was started from ("" for the host's root; nspawn
# itself moved into 'supervisor' below it).
lab_nspawn_parent() {
  local cg
  cg=$(sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null) || return 1
  cg=${cg%/supervisor}
  echo "${cg#/}"
}

# PID of the container's systemd (PID 1 inside), or fail.
lab_leader() {
  local p c
  p=$(cat "$STATE/nspawn.pid" 2>/dev/null) || return 1
  [ -n "$p" ] && lab_alive "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd-nspawn ] || return 1
  for c in $(pgrep -P "$p"); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && { echo "$c"; return 0; }
  done
  return 1
}

# Run a command inside the running container. NB: the process keeps the host's cgroup; use
# systemd-run inside for anything long-lived.
ct() {
  local l; l=$(lab_leader) || lab_die "container $MACHINE is not running"
  nsenter -t "$l" -a env -i PATH="$CT_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# The Debian archive the host's apt uses: the first URI of an enabled `deb` entry (deb822
# `URIs:` or a one-line `deb URI SUITE …`) for a Debian suite that is not -security (those
# live in another archive). Third-party repositories are skipped by their suite names.
lab_host_mirror() {
  local suites='^(buster|bullseye|bookworm|trixie|forky|duke|sid|unstable|testing|stable|oldstable)(-updates|-backports)?$'
  local f
  local apt=${LAB_APT_DIR:-/etc/apt}
  for f in "$apt/sources.list" "$apt"/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # deb [OPTIONS] URI SUITE COMPONENTS…
    awk -v re="$suites" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                                      if ($(i + 1) ~ re) { print $i; exit } }' "$f"
  done
  for f in "$apt"/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v re="$suites" '
      function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && uri != "" && ok) { print uri; found = 1 }
                         types = ""; uri = ""; ok = 0; enabled = "" }
      /^[ \t]*$/ { flush(); if (found) exit; next }
      /^#/ { next }
      tolower($1) == "types:" { types = $0; sub(/^[^:]*:[ \t]*/, "", types) }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i ~ re) ok = 1 }
      END { if (!found) flush() }' "$f"
  done
}

# Set MIRROR (unless given) for the scripts that fetch packages, or fail saying how to.
lab_need_mirror() {
  [ -n "$MIRROR" ] && return 0
  MIRROR=$(lab_host_mirror | head -n 1)
  [ -n "$MIRROR" ] || lab_die "no Debian mirror: the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/) name none; set MIRROR=URL"
  export MIRROR
}
