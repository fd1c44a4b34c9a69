#!/bin/busybox sh
# Guest of tests/lab_vsock.rs: a busybox init on a vhost-user vsock device (user-space backend).
#  1. loads the vsock modules and reads vmm.notify_socket from its SMBIOS type 11 credentials
#     (what `virt-systemd rewrite` wrote);
#  2. serves vsock port 7000 with the real systemd-socket-activate (--inetd, one child per
#     connection): a greeting line, then an echo of the first line it reads;
#  3. reports readiness with the real systemd-notify to that socket (READY=1, STATUS=,
#     X_SYSTEMD_UNIT_ACTIVE=ssh-access.target) and prints its exit code and duration.
# Everything the test checks is a VSDVSOCK-* line on the serial console.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
$B mkdir -p /run /tmp
# only emergencies on the console, so kernel messages cannot split our lines
echo 1 > /proc/sys/kernel/printk
say() { echo "VSDVSOCK-$*"; }
uptime() { $B cut -d' ' -f1 /proc/uptime; }
say "BEGIN $($B uname -r) at $(uptime) s"

# vsock may be built in (no .ko extracted for it) or a module
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport dmi-sysfs; do
  [ -e /lib/modules/$m.ko ] || continue
  $B insmod /lib/modules/$m.ko 2>/dev/null || say "INSMOD-FAILED $m"
done
say "DEVVSOCK $($B ls -l /dev/vsock 2>&1)"

# the readiness socket the host told us about (SMBIOS type 11 strings start at byte 6)
ns=
for f in /sys/firmware/dmi/entries/11-*/raw; do
  [ -e "$f" ] || continue
  v=$($B tail -c +6 "$f" | $B tr '\0' '\n' | $B sed -n 's/^io\.systemd\.credential:vmm\.notify_socket=//p' | $B head -1)
  [ -n "$v" ] && ns=$v
done
say "CREDENTIAL vmm.notify_socket=${ns:-NONE}"
[ -n "$ns" ] || ns=vsock-stream:2:8742

# the guest service, up before we report readiness
/usr/bin/systemd-socket-activate -l vsock::7000 -a --inetd /bin/vsd-echo 2>/tmp/activate.log &
# the same on port 22, where `virt-systemd ssh` goes (its client sees a non-SSH banner)
/usr/bin/systemd-socket-activate -l vsock::22 -a --inetd /bin/vsd-echo 2>/tmp/activate22.log &
i=0
# (TCG on a loaded machine can be slow: up to 60 s; it goes on as soon as it listens)
while ! $B grep -q Listening /tmp/activate.log && [ $i -lt 600 ]; do $B sleep 0.1; i=$((i+1)); done
say "SERVICE $($B tr '\n' '|' < /tmp/activate.log)"

# readiness: the real systemd-notify (retried only if the transport is not there yet)
STATUS="vsd-vsock guest up, echo service on vsock port 7000"
i=0
while :; do
  t0=$(uptime)
  NOTIFY_SOCKET=$ns SYSTEMD_LOG_LEVEL=debug /usr/bin/systemd-notify --ready --status="$STATUS" \
    X_SYSTEMD_UNIT_ACTIVE=ssh-access.target > /tmp/notify.log 2>&1
  rc=$?
  t1=$(uptime)
  say "NOTIFY-ATTEMPT $i rc=$rc from=$t0 to=$t1 log=$($B tr '\n' '|' < /tmp/notify.log)"
  [ $rc = 0 ] && break
  i=$((i+1))
  [ $i -lt 10 ] || break
  $B sleep 1
done
say "NOTIFY-RC $rc attempts=$((i+1)) seconds=$(echo "$t0 $t1" | $B awk '{printf "%.2f", $2-$1}')"
say "DONE"
while true; do $B sleep 3600; done
