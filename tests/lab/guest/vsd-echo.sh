#!/bin/busybox sh
# One connection to the guest service of vsock-init.sh (stdin/stdout are the socket):
# a greeting, then an echo of the first line received.
echo "VSDVSOCK-HELLO from the guest's port 7000"
read -r line
echo "VSDVSOCK-ECHO $line"
