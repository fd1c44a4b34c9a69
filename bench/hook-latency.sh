#!/bin/bash
# Whole-process latency of virt-systemd-hook against /bin/true on the same XML:
#  - `prepare` (no D-Bus) on this host, with hyperfine, and its peak RSS;
#  - `started` with real systemd-machined in the lab (trixie): each run registers a real
#    process as a machine (then `release` unregisters it, untimed), timed in-container with
#    bash's $EPOCHREALTIME over N runs, against /bin/true timed the same way (mean and
#    median); peak RSS with GNU time.
# Targets (issue 4): prepare <= 1.5x /bin/true, started <= 3x, peak RSS <= 8 MiB.
#
# Usage: bench/hook-latency.sh [--runs N] [--no-lab] [--suite SUITE] [--scope] [--session]
#   --suite: the lab's Debian suite (trixie; sid for systemd >= 261, where `started`
#            registers over varlink with a control address)
#   --scope: the stand-in QEMU runs in a scope of its own, as libvirt with cgroups puts QEMU
#            (the hook then registers that scope; without it, in a service: machined makes
#            the scope, and on sid the hook then hands it over to a varlink registration)
#   --session: a session domain (sid: systemd >= 259): the hook runs as a lingering user,
#            the stand-in QEMU is a service of that user's manager, and `started` registers
#            it with the user's machined over varlink (allocateUnit: machined makes a scope)
# Needs root for the lab part, python3, and GNU time (apt-get install time) for peak RSS.
set -euo pipefail
export LC_ALL=C
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
runs=200
lab=1
suite=trixie
scope=0
session=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --no-lab) lab=0; shift ;;
    --suite) suite="$2"; shift 2 ;;
    --scope) scope=1; shift ;;
    --session) session=1; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for t in python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install time)" >&2; exit 2; }
done
# The binaries that ship (packaging/build-bins.sh: static, as `make` builds them).
"$root/packaging/build-bins.sh" >/dev/null 2>&1 || "$root/packaging/build-bins.sh" >/dev/null
hook="$root/target/dist/virt-systemd-hook"
out="$here/out"
mkdir -p "$out"
# A typical domain as virt-systemd leaves it (the hook checks drift at prepare).
"$root/target/dist/virt-systemd" --config /dev/null rewrite "$here/typical.xml" \
  --hostname web-01 --machine-id > "$out/hook-domain.xml"
printf '[hook]\nstate_dir = "%s/hook-state"\n' "$out" > "$out/hook.toml"

# Debian 12's hyperfine cannot feed stdin from a file: time spawn-to-exit (and read peak
# RSS from wait4) with the same harness for both commands.
spawn_bench() {
  local xml=$1; shift
  python3 - "$runs" "$xml" "$@" <<'PY'
import os, sys, time, statistics
runs, xml, argvs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def once(argv):
    fd = os.open(xml, os.O_RDONLY)
    null = os.open(os.devnull, os.O_WRONLY)
    t = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter_ns() - t
    os.close(fd); os.close(null)
    return dt, ru.ru_maxrss
for argv in argvs:
    argv = argv.split()
    for _ in range(20): once(argv)
    res = [once(argv) for _ in range(runs)]
    print(statistics.median(r[0] for r in res) / 1e6, max(r[1] for r in res))
PY
}
export VIRT_SYSTEMD_CONFIG="$out/hook.toml"
read -r hp rss_prepare tp rss_true < <(spawn_bench "$out/hook-domain.xml" "$hook web-01 prepare begin -" "/bin/true web-01 prepare begin -" | tr '\n' ' '; echo)
# wait4's ru_maxrss of a posix_spawn'd child includes the spawning Python: use GNU time.
rss_prepare=$(/usr/bin/time -f %M "$hook" web-01 prepare begin - < "$out/hook-domain.xml" 2>&1 >/dev/null | tail -1)
ratio() { echo "scale=2; $1 / $2" | bc; }
printf '%-30s %10s %10s %7s %8s\n' what hook_ms true_ms ratio rss_kib
printf '%-30s %10.3f %10.3f %7s %8s\n' "prepare (host, no D-Bus)" "$hp" "$tp" "$(ratio "$hp" "$tp")" "$rss_prepare"

[ "$lab" = 1 ] || exit 0
export SUITE=$suite LAB_BIN_DIR="$root/target/dist" LAB_LOCK=${LAB_LOCK:-/run/lock/virt-systemd-lab.lock}
exec 9>"$LAB_LOCK"; flock 9; export LAB_LOCK_HELD=1
trap '"$root/tests/lab/lab-down.sh" >/dev/null 2>&1 || true' EXIT
"$root/tests/lab/lab-up.sh" > "$out/hook-lab-up.log" 2>&1
ct="$root/tests/lab/ct.sh"
"$ct" sh -c 'cat > /usr/local/bin/gnutime && chmod 755 /usr/local/bin/gnutime' < /usr/bin/time
"$ct" sh -c 'cat > /root/live.xml' < "$out/hook-domain.xml"
if [ "$session" = 1 ]; then
  "$ct" sh -c 'useradd -m -u 1600 benchu && loginctl enable-linger benchu && cp /root/live.xml /home/benchu/ && chmod 644 /home/benchu/live.xml'
  "$ct" bash -c 'for _ in $(seq 600); do [ -S /run/user/1600/systemd/machine/io.systemd.Machine ] && exit 0; sleep 0.1; done; exit 1'
  "$ct" runuser -u benchu -- env XDG_RUNTIME_DIR=/run/user/1600 bash -c '
set -e
mkdir -p /run/user/1600/libvirt/qemu/run
# A new stand-in QEMU (a user service, as the session daemon'"'"'s QEMU) per run: a registration
# makes it a scope of its own, which lives on until the process goes.
fresh() {
  XDG_RUNTIME_DIR=/run/user/1600 systemd-run --user -q --unit=bench-fakeqemu-$1 sleep 3600
  XDG_RUNTIME_DIR=/run/user/1600 systemctl --user show -P MainPID bench-fakeqemu-$1 \
    > /run/user/1600/libvirt/qemu/run/web-01.pid
}
# What libvirt gives a session hook: no XDG_RUNTIME_DIR, no bus address.
unset XDG_RUNTIME_DIR
hook=/opt/virt-systemd/bin/virt-systemd-hook
n='"$runs"'
: > ~/t_hook; : > ~/t_true
for i in $(seq "$n"); do
  fresh "$i"
  s=$EPOCHREALTIME; $hook web-01 started begin - < ~/live.xml; e=$EPOCHREALTIME
  echo "$s $e" >> ~/t_hook
  $hook web-01 release end destroyed < ~/live.xml
  kill "$(cat /run/user/1600/libvirt/qemu/run/web-01.pid)"
  s=$EPOCHREALTIME; /bin/true web-01 started begin - < ~/live.xml; e=$EPOCHREALTIME
  echo "$s $e" >> ~/t_true
done
fresh rss
rss=$(gnutime -f %M $hook web-01 started begin - < ~/live.xml 2>&1 >/dev/null | tail -1)
XDG_RUNTIME_DIR=/run/user/1600 machinectl --user show web-01 -p Leader >/dev/null
$hook web-01 release end destroyed < ~/live.xml
kill "$(cat /run/user/1600/libvirt/qemu/run/web-01.pid)"
echo "$rss $n"
' > "$out/hook-started.txt"
  "$ct" cat /home/benchu/t_hook > "$out/t_hook"
  "$ct" cat /home/benchu/t_true > "$out/t_true"
  label="session domain (user machined), stand-in QEMU a user service"
else
  "$ct" bash -c '
set -e
if [ '"$scope"' = 1 ]; then
  # systemd-run --scope puts itself in the scope, then execs the command: $! is it.
  systemd-run -q --scope --unit=bench-fakeqemu sleep 3600 &
  pid=$!
  for _ in $(seq 100); do systemctl -q is-active bench-fakeqemu.scope && break; sleep 0.05; done
else
  systemd-run -q --unit=bench-fakeqemu sleep 3600
  pid=$(systemctl show -P MainPID bench-fakeqemu)
fi
mkdir -p /run/bench-pids && echo "$pid" > /run/bench-pids/web-01.pid
printf "[hook]\npid_dir = \"/run/bench-pids\"\n" > /root/hook.toml
export VIRT_SYSTEMD_CONFIG=/root/hook.toml
hook=/opt/virt-systemd/bin/virt-systemd-hook
n='"$runs"'
: > /root/t_hook; : > /root/t_true
for i in $(seq "$n"); do
  s=$EPOCHREALTIME; $hook web-01 started begin - < /root/live.xml; e=$EPOCHREALTIME
  echo "$s $e" >> /root/t_hook
  machinectl show web-01 >/dev/null
  $hook web-01 release end destroyed < /root/live.xml
  s=$EPOCHREALTIME; /bin/true web-01 started begin - < /root/live.xml; e=$EPOCHREALTIME
  echo "$s $e" >> /root/t_true
done
rss=$(gnutime -f %M $hook web-01 started begin - < /root/live.xml 2>&1 >/dev/null | tail -1)
$hook web-01 release end destroyed < /root/live.xml
kill "$pid" 2>/dev/null || true
echo "$rss $n"
' > "$out/hook-started.txt"
  "$ct" cat /root/t_hook > "$out/t_hook"
  "$ct" cat /root/t_true > "$out/t_true"
  label="stand-in QEMU in a $([ "$scope" = 1 ] && echo scope || echo service)"
fi
# Each line of a timing file is "start end" in seconds: mean and median in ms.
stats() {
  awk '{ print ($2 - $1) * 1000 }' "$1" | sort -n |
    awk '{ a[NR] = $1; t += $1 } END { printf "%.3f %.3f\n", t / NR, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
read -r rss n < "$out/hook-started.txt"
read -r mh medh < <(stats "$out/t_hook")
read -r mt medt < <(stats "$out/t_true")
echo "lab: $suite, $label"
printf '%-30s %10.3f %10.3f %7s %8s\n' "started (lab, mean of $n)" "$mh" "$mt" "$(ratio "$mh" "$mt")" "$rss"
printf '%-30s %10.3f %10.3f %7s %8s\n' "started (lab, median of $n)" "$medh" "$medt" "$(ratio "$medh" "$medt")" "$rss"
