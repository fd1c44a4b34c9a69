#!/bin/busybox sh
# Default lab guest: say hello on the serial console, then idle.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
echo "TINYGUEST: booted kernel $($B uname -r)"
while true; do $B sleep 3600; done
