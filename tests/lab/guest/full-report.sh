#!/bin/sh
# Runs in the full systemd guest (vsd-report.service, after multi-user.target): print what
# systemd made of the credentials on the serial console, then power off.
exec > /dev/ttyS0 2>&1
hex() { od -An -v -tx1 | tr -d ' \n'; }
echo "VSDFULL-BEGIN $(systemctl --version | head -n 1)"
echo "VSDFULL-HOSTNAME $(cat /proc/sys/kernel/hostname)"
echo "VSDFULL-MACHINEID $(cat /etc/machine-id)"
echo "VSDFULL-CREDS $(ls /run/credentials/@system 2>&1 | tr '\n' ' ')"
echo "VSDFULL-CRED $(hex < /run/credentials/@system/vsdtest)"
echo "VSDFULL-STATE $(systemctl is-system-running)"
echo "VSDFULL-END"
systemctl poweroff --no-block
