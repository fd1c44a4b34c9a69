#!/bin/sh
# vsock-initrd.sh OUT - runs inside the lab container: the initramfs of tests/lab_vsock.rs.
# vsock-init.sh as /init, plus the container's real systemd-notify and systemd-socket-activate
# with every shared library they load (same paths as here: the guest has no ld.so.cache, and the
# default search path and the binaries' RUNPATH find them there).
set -eu
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
set -- "$HERE/vsd-echo.sh=/bin/vsd-echo"
for bin in /usr/bin/systemd-notify /usr/bin/systemd-socket-activate; do
  set -- "$@" "$bin=$bin"
done
for lib in $(ldd /usr/bin/systemd-notify /usr/bin/systemd-socket-activate \
             | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\// && $i !~ /:$/) print $i}' | sort -u); do
  set -- "$@" "$lib=$lib"
done
exec "$HERE/mkinitrd.sh" "$OUT" "$HERE/vsock-init.sh" "$@"
