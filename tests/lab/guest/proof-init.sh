#!/bin/busybox sh
# Guest-side proof (tests/lab_guest.rs): print what the guest received from the host, exactly,
# to the serial console, then power off. Binary data is hex-encoded on one line per item so it
# survives the serial log byte for byte:
#   VSDPROOF-SMBIOS11 <path> <hex of the raw SMBIOS type 11 structure, strings included>
#   VSDPROOF-CMDLINE <hex of /proc/cmdline>
#   VSDPROOF-UUID <product_uuid>
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
# only emergencies on the console, so kernel messages cannot split our lines
echo 1 > /proc/sys/kernel/printk
# dmi-sysfs (/sys/firmware/dmi/entries) may be a module
[ -d /sys/firmware/dmi/entries ] || { [ -e /lib/modules/dmi-sysfs.ko ] && $B insmod /lib/modules/dmi-sysfs.ko; }
hex() { $B od -An -v -tx1 | $B tr -d ' \n'; }
echo "VSDPROOF-BEGIN $($B uname -r)"
found=0
for f in /sys/firmware/dmi/entries/11-*/raw; do
  [ -e "$f" ] || continue
  found=1
  echo "VSDPROOF-SMBIOS11 $f $(hex < "$f")"
done
[ $found = 1 ] || echo "VSDPROOF-NOSMBIOS11 $($B ls /sys/firmware/dmi/entries 2>&1 | $B tr '\n' ' ')"
echo "VSDPROOF-CMDLINE $(hex < /proc/cmdline)"
echo "VSDPROOF-UUID $($B cat /sys/class/dmi/id/product_uuid 2>&1)"
echo "VSDPROOF-END"
$B sync
$B poweroff -f
while true; do $B sleep 3600; done
