#!/bin/bash
# hook-install.sh NAME FILE|-   install FILE (or stdin) as /etc/libvirt/hooks/qemu.d/NAME in the
#                               running lab container (mode 755), then restart libvirtd
# hook-install.sh --remove NAME remove it again, then restart libvirtd
# libvirt (>= 6.5) reads its hooks directory only when the daemon starts, hence the restart.
# The container's root is a volatile overlay: hooks are gone after lab-down.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
D=/etc/libvirt/hooks/qemu.d
if [ "${1:-}" = --remove ]; then
  ct rm -f "$D/${2:?NAME}"
else
  NAME=${1:?usage: hook-install.sh NAME FILE|-} SRC=${2:?usage: hook-install.sh NAME FILE|-}
  case "$NAME" in */*|.*|"") lab_die "bad hook name: $NAME";; esac
  [ "$SRC" = - ] && SRC=/dev/stdin
  ct sh -c "mkdir -p $D && cat > $D/$NAME.tmp && chmod 755 $D/$NAME.tmp && mv $D/$NAME.tmp $D/$NAME" < "$SRC"
fi
ct systemctl restart libvirtd.service
for _ in $(seq 1 100); do ct virsh -q version >/dev/null 2>&1 && exit 0; sleep 0.1; done
lab_die "libvirtd does not answer after restart"
