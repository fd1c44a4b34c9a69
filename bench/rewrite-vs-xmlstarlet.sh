#!/bin/bash
# Whole-process time of `virt-systemd rewrite` against `xmlstarlet ed` doing the equivalent
# insert (<sysinfo type='smbios'><oemStrings> with the same entries, <os><smbios
# mode='sysinfo'/>, and <vsock model='virtio'><cid auto='yes'/></vsock>), side by side with
# hyperfine, plus /bin/true on the typical file for reference, and virt-systemd's peak RSS.
#
# Targets (issue 2, "Performance"): >= 5x faster than xmlstarlet on the 1 MiB file; the
# typical file within 1.5x of /bin/true; peak RSS <= 8 MiB. Ratios use hyperfine's median.
#
# Usage: bench/rewrite-vs-xmlstarlet.sh [--runs N] [--warmup N] [--check] [--no-build]
#   --check     exit 1 when a target is missed (default: report only, exit 0)
#   --no-build  use the existing target/dist/virt-systemd (or $VIRT_SYSTEMD)
# The binary measured is the one that ships: packaging/build-bins.sh (static, as `make`).
# Needs: hyperfine, xmlstarlet, GNU time (Debian: apt-get install hyperfine xmlstarlet time).
# Results (CSV/JSON per input, outputs of both tools) land in bench/out/.
set -euo pipefail
export LC_ALL=C
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="$here/out"

runs=30
warmup=5
check=0
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --check) check=1; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v xmlstarlet >/dev/null || missing+=(xmlstarlet)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
  exit 2
fi

vs="${VIRT_SYSTEMD:-$root/target/dist/virt-systemd}"
if [ "$build" = 1 ] && [ -z "${VIRT_SYSTEMD:-}" ]; then
  "$root/packaging/build-bins.sh" >/dev/null 2>&1 || "$root/packaging/build-bins.sh" >/dev/null
fi
[ -x "$vs" ] || { echo "no binary at $vs" >&2; exit 2; }

mkdir -p "$out"
"$here/make-inputs.sh" "$out" >/dev/null
typical="$here/typical.xml"
large="$out/large.xml"
# Host defaults only from here, never from /etc/virt-systemd/config.toml.
: >"$out/empty.toml"

# The request: hostname, machine ID, an SSH key, two credentials, kernel command line,
# vsock and notify from the defaults.
hostname=web-01
sshkey='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx3lB1dyZxU4o8Zq1hYtKj2m2m0A6v1wK5E7Y3Vb0cD admin@example.org'
creds=('firstboot.locale=C.UTF-8' 'firstboot.timezone=Europe/Berlin')
cmdline='console=ttyS0 systemd.journald.forward_to_console=1'
notify_port=8742

vs_args=(rewrite --config "$out/empty.toml" --hostname "$hostname" --machine-id
  --ssh-key "$sshkey" --kernel-cmdline "$cmdline")
for c in "${creds[@]}"; do vs_args+=(--credential "$c"); done

# The same OEM strings, in virt-systemd's order, for one file.
entries() {
  local uuid
  uuid="$(xmlstarlet sel -t -v /domain/uuid "$1")"
  printf '%s\n' \
    "io.systemd.credential:system.hostname=$hostname" \
    "io.systemd.credential:ssh.authorized_keys.root=$sshkey"
  for c in "${creds[@]}"; do printf '%s\n' "io.systemd.credential:$c"; done
  printf '%s\n' \
    "io.systemd.credential:system.machine_id=${uuid//-/}" \
    "io.systemd.credential:vmm.notify_socket=vsock-stream:2:$notify_port" \
    "io.systemd.stub.kernel-cmdline-extra=$cmdline" \
    "io.systemd.boot.kernel-cmdline-extra=$cmdline"
}

# xmlstarlet ed arguments doing the equivalent insert on one file.
xs_args() {
  local e
  XS=(ed -P
    -i /domain/os -t elem -n sysinfo
    -s '/domain/sysinfo[last()]' -t attr -n type -v smbios
    -s '/domain/sysinfo[last()]' -t elem -n oemStrings)
  while IFS= read -r e; do
    XS+=(-s '/domain/sysinfo[last()]/oemStrings' -t elem -n entry -v "$e")
  done < <(entries "$1")
  XS+=(-s /domain/os -t elem -n smbios
    -s /domain/os/smbios -t attr -n mode -v sysinfo
    -s /domain/devices -t elem -n vsock
    -s '/domain/devices/vsock[last()]' -t attr -n model -v virtio
    -s '/domain/devices/vsock[last()]' -t elem -n cid
    -s '/domain/devices/vsock[last()]/cid' -t attr -n auto -v yes
    "$1")
}

# One command line for hyperfine -N (no shell), each word quoted.
quote() {
  local w s=""
  for w in "$@"; do s+="$(printf '%q' "$w") "; done
  printf '%s' "${s% }"
}

# What both tools produced, for the equivalence check.
summary() {
  xmlstarlet sel -t \
    -m "/domain/sysinfo[@type='smbios']/oemStrings/entry" -v . -n -b \
    -v "concat('smbios=', /domain/os/smbios/@mode)" -n \
    -v "concat('vsock=', /domain/devices/vsock/@model, ' cid-auto=', /domain/devices/vsock/cid/@auto)" -n \
    "$1"
}

# Median time (seconds) of a named command from hyperfine's CSV.
median() { awk -F, -v n="$2" '$1 == n { print $4 }' "$1"; }
mean_sd() { awk -F, -v n="$2" '$1 == n { printf "%.2f ms ± %.2f", $2 * 1000, $3 * 1000 }' "$1"; }
ms() { awk -v t="$1" 'BEGIN { printf "%.2f ms", t * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Largest peak RSS (KiB) of 5 runs.
peak_rss() {
  local i m max=0
  for i in 1 2 3 4 5; do
    m="$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1)"
    [ "$m" -gt "$max" ] && max="$m"
  done
  echo "$max"
}

echo "virt-systemd: $vs"
echo "xmlstarlet:   $(command -v xmlstarlet) $(xmlstarlet --version | head -n1)"
echo "hyperfine:    $(hyperfine --version)  (runs=$runs warmup=$warmup, -N: no shell)"
libs="$(ldd "$vs" 2>/dev/null | awk '$1 !~ /^(linux-vdso|\/)/ { print $1 }')"
echo "links:        $(echo "$libs" | wc -l) shared libraries$(echo "$libs" | grep -q '^libvirt\.so' \
  && echo ', including libvirt.so (its load time counts in every run)')"
echo "machine:      $(nproc) CPUs, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

declare -A size rss xrss med_vs med_xs
med_true=""
for name in typical large; do
  f="${!name}"
  size[$name]=$(wc -c <"$f")
  xs_args "$f"

  # Equivalence: both produce the same OEM strings, smbios mode and vsock.
  "$vs" "${vs_args[@]}" "$f" >"$out/$name.virt-systemd.xml"
  xmlstarlet "${XS[@]}" >"$out/$name.xmlstarlet.xml"
  if ! diff -u <(summary "$out/$name.virt-systemd.xml") <(summary "$out/$name.xmlstarlet.xml") \
    >"$out/$name.equiv.diff"; then
    echo "$name: virt-systemd and xmlstarlet outputs differ in what they insert:" >&2
    cat "$out/$name.equiv.diff" >&2
    exit 1
  fi
  if [ "$(summary "$out/$name.virt-systemd.xml" | head -n -2)" != "$(entries "$f")" ]; then
    echo "$name: virt-systemd did not produce the expected OEM strings" >&2
    exit 1
  fi

  cmds=()
  if [ "$name" = typical ]; then
    cmds+=(-n true "$(quote /bin/true "$f")")
  fi
  cmds+=(-n virt-systemd "$(quote "$vs" "${vs_args[@]}" "$f")")
  cmds+=(-n xmlstarlet "$(quote xmlstarlet "${XS[@]}")")
  echo "== $name ($(ratio "${size[$name]}" 1024) KiB)"
  hyperfine -N --style basic --warmup "$warmup" --runs "$runs" \
    --export-csv "$out/$name.csv" --export-json "$out/$name.json" "${cmds[@]}"
  echo

  med_vs[$name]="$(median "$out/$name.csv" virt-systemd)"
  med_xs[$name]="$(median "$out/$name.csv" xmlstarlet)"
  [ "$name" = typical ] && med_true="$(median "$out/$name.csv" true)"
  rss[$name]="$(peak_rss "$vs" "${vs_args[@]}" "$f")"
  xrss[$name]="$(peak_rss xmlstarlet "${XS[@]}")"
done

met() { if [ "$1" = 1 ]; then echo met; else echo MISSED; fi; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? 1 : 0 }'; }

echo "== results (median wall time per process)"
printf '%-8s %10s %12s %18s %18s %10s %14s %14s\n' \
  input size /bin/true virt-systemd xmlstarlet 'xml/vs' 'vs RSS' 'xml RSS'
for name in typical large; do
  t="-"
  [ "$name" = typical ] && t="$(ms "$med_true")"
  printf '%-8s %10s %12s %18s %18s %9sx %10s KiB %10s KiB\n' "$name" \
    "$(ratio "${size[$name]}" 1024) KiB" "$t" \
    "$(ms "${med_vs[$name]}")" "$(ms "${med_xs[$name]}")" \
    "$(ratio "${med_xs[$name]}" "${med_vs[$name]}")" "${rss[$name]}" "${xrss[$name]}"
done
echo

speed="$(ratio "${med_xs[large]}" "${med_vs[large]}")"
vtrue="$(ratio "${med_vs[typical]}" "$med_true")"
ok1="$(ge "$speed" 5)"
ok2="$(le "$vtrue" 1.5)"
ok3="$(le "${rss[typical]}" 8192)"
ok4="$(le "${rss[large]}" 8192)"
echo "== targets"
printf '%-52s %12s  %s\n' "large: xmlstarlet / virt-systemd >= 5x" "${speed}x" "$(met "$ok1")"
printf '%-52s %12s  %s\n' "typical: virt-systemd / /bin/true <= 1.5x" "${vtrue}x" "$(met "$ok2")"
printf '%-52s %12s  %s\n' "typical: virt-systemd peak RSS <= 8 MiB" \
  "$(ratio "${rss[typical]}" 1024) MiB" "$(met "$ok3")"
printf '%-52s %12s  %s\n' "large: virt-systemd peak RSS <= 8 MiB" \
  "$(ratio "${rss[large]}" 1024) MiB" "$(met "$ok4")"

if [ "$check" = 1 ] && [ "$ok1$ok2$ok3$ok4" != 1111 ]; then
  exit 1
fi
exit 0
