#!/bin/busybox sh
# Lab guest that powers off on the ACPI power button, as a systemd guest does: what
# `virsh shutdown` (and machinectl poweroff through the control service) asks for.
# Needs the domain's <features><acpi/></features> and the evdev and button modules.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in evdev button; do $B insmod /lib/modules/$m.ko 2>/dev/null; done
echo "BUTTONGUEST: booted"
dev=
for i in 1 2 3 4 5 6 7 8 9 10; do
  for e in /sys/class/input/event*; do
    [ -e "$e/device/name" ] && $B grep -q "Power Button" "$e/device/name" && dev=/dev/input/${e##*/}
  done
  [ -n "$dev" ] && [ -e "$dev" ] && break
  $B sleep 1
done
if [ -z "$dev" ]; then
  echo "BUTTONGUEST: no power button"
  while true; do $B sleep 3600; done
fi
echo "BUTTONGUEST: waiting on $dev"
# One input event (24 bytes on x86_64) = the button was pressed.
$B dd if="$dev" of=/dev/null bs=24 count=1 2>/dev/null
echo "BUTTONGUEST: power button, powering off"
$B poweroff -f
