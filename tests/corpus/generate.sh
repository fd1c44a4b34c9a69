#!/bin/bash
# Regenerate the domain-XML corpus in this directory with the host's own libvirt tools
# (Debian 12: libvirt 9.0, virtinst 4.1). Newer libvirt writes devices 9.0 rejects, so the
# committed files come from here; tests/corpus.rs and tests/test_driver.rs read them.
#
#   vi-*.xml    `virt-install --print-xml` output (virtinst's own formatting, double quotes)
#   vd-*.xml    `virsh -c test:///default define` + `dumpxml --inactive` of a vi-* file
#               (libvirt-normalized), and vd-test-builtin.xml, the test driver's own domain
#   hand-*.xml  byte-level variants of the above (CRLF, BOM, comments/PIs, tabs, quoting,
#               one line, foreign metadata, ...), made here by sed/awk so they stay derivable
#
# virt-install talks to libvirt's test driver (no daemon). That driver only reports an i686
# "test" hypervisor, so virt-install is pointed at it through virtinst's test URI
# (__virtinst_test__…, virtinst/uri.py MagicURI) with hand-written x86_64 KVM capabilities
# (support/*.xml): the output is what virt-install writes for a KVM host, with predictable
# UUIDs/MACs (we pass them explicitly anyway). vi-test-hv.xml is the plain test:///default
# output for comparison.
#
# Usage: tests/corpus/generate.sh        (needs virt-install, virsh; run from anywhere)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export LC_ALL=C.UTF-8

for t in virt-install virsh sed awk; do
    command -v "$t" >/dev/null || { echo "generate.sh: $t is missing" >&2; exit 1; }
done

rm -f vi-*.xml vd-*.xml hand-*.xml

URI="__virtinst_test__test:///default,predictable,caps=$here/support/caps-kvm-x86_64.xml,domcaps=$here/support/domcaps-kvm-x86_64.xml"
IMG=/var/lib/libvirt/images

# vi NAME UUID-SUFFIX ARGS...: one virt-install --print-xml document.
vi() {
    local name=$1 n=$2
    shift 2
    virt-install --connect "$URI" --print-xml --noautoconsole \
        --name "$name" --uuid "5a1b2c3d-0000-4000-8000-0000000000$n" \
        --virt-type kvm --arch x86_64 "$@" >"vi-$name.xml"
}

vi i440fx-bios 01 --machine pc --memory 2048 --vcpus 2 --osinfo debian11 --import \
    --disk path=$IMG/i440fx-bios.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:01:01

vi q35-uefi 02 --machine q35 --boot uefi --memory 4096 --vcpus 4 --osinfo debian11 --import \
    --disk path=$IMG/q35-uefi.qcow2,size=20,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:02:01 --tpm emulator

vi q35-uefi-loader 03 --machine q35 --memory 2048 --osinfo debian11 --import \
    --boot loader=/usr/share/OVMF/OVMF_CODE_4M.ms.fd,loader.readonly=yes,loader.type=pflash,loader.secure=yes,nvram.template=/usr/share/OVMF/OVMF_VARS_4M.ms.fd,nvram=/var/lib/libvirt/qemu/nvram/q35-uefi-loader_VARS.fd \
    --features smm.state=on \
    --disk path=$IMG/q35-uefi-loader.qcow2,size=20,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:03:01 --graphics none

vi kernel-boot 04 --machine q35 --memory 1024 --osinfo linux2022 --import \
    --boot kernel=/var/lib/libvirt/boot/vmlinuz,initrd=/var/lib/libvirt/boot/initrd.img,kernel_args="console=ttyS0 root=/dev/vda1 rw" \
    --disk path=$IMG/kernel-boot.raw,size=2,format=raw,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:04:01 --graphics none

vi kernel-boot-no-cmdline 05 --machine q35 --memory 1024 --osinfo linux2022 --import \
    --boot kernel=/var/lib/libvirt/boot/vmlinuz,initrd=/var/lib/libvirt/boot/initrd.img \
    --disk path=$IMG/kernel-boot-no-cmdline.raw,size=2,format=raw,bus=virtio \
    --network none --graphics none

# Existing SMBIOS sysinfo: bios and system blocks, a foreign OEM string and a hand-written
# systemd credential that virt-system does not manage (kept and reported).
vi sysinfo 06 --machine q35 --memory 2048 --osinfo debian11 --import \
    --sysinfo type=smbios,bios.vendor=SeaBIOS,bios.version=1.16.2,system.manufacturer="ACME Corp",system.product=Widget,system.serial=SN-0006,oemStrings.entry0="acme:tag=blue",oemStrings.entry1="io.systemd.credential:handwritten.cred=hello" \
    --disk path=$IMG/sysinfo.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:06:01

# A hand-written credential for a name the rewrite sets (system.hostname): a conflict
# unless --force.
vi sysinfo-conflict 07 --machine q35 --memory 2048 --osinfo debian11 --import \
    --sysinfo type=smbios,system.manufacturer="ACME Corp",oemStrings.entry0="io.systemd.credential:system.hostname=hand-set" \
    --disk path=$IMG/sysinfo-conflict.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:07:01

# Existing fw_cfg sysinfo with a foreign entry.
vi fwcfg 08 --machine q35 --memory 2048 --osinfo debian11 --import \
    --sysinfo type=fwcfg,entry0.name=opt/com.example/config,entry0.file=/etc/example/config.json \
    --disk path=$IMG/fwcfg.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:08:01

vi vsock-auto 09 --machine q35 --memory 2048 --osinfo debian11 --import --vsock cid.auto=yes \
    --disk path=$IMG/vsock-auto.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:09:01

vi vsock-fixed 10 --machine q35 --memory 2048 --osinfo debian11 --import \
    --vsock cid.auto=no,cid.address=42 \
    --disk path=$IMG/vsock-fixed.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:10:01

vi qemu-commandline 11 --machine q35 --memory 2048 --osinfo debian11 --import \
    --qemu-commandline='-fw_cfg name=opt/com.example/hello,string=world' \
    --qemu-commandline='env=EXAMPLE_ENV=1' \
    --disk path=$IMG/qemu-commandline.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:11:01

vi multi-disk-nic 12 --machine q35 --memory 8192 --vcpus 8 --osinfo debian11 --import \
    --disk path=$IMG/multi-root.qcow2,size=20,format=qcow2,bus=virtio \
    --disk path=$IMG/multi-data.raw,size=100,format=raw,bus=scsi,cache=none \
    --disk device=cdrom,bus=sata \
    --disk path=/var/lib/libvirt/images/multi-swap.raw,size=4,format=raw,bus=virtio,driver.discard=unmap \
    --network network=default,model=virtio,mac=52:54:00:00:12:01 \
    --network bridge=br0,model=virtio,mac=52:54:00:00:12:02 \
    --network type=direct,source=eth0,source.mode=bridge,model=e1000e,mac=52:54:00:00:12:03 \
    --network user,mac=52:54:00:00:12:04 \
    --controller type=scsi,model=virtio-scsi --rng /dev/urandom

vi smbios-host 13 --machine pc --memory 1024 --osinfo debian11 --import --sysinfo host \
    --disk path=$IMG/smbios-host.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:13:01

vi smbios-emulate 14 --machine pc --memory 1024 --osinfo debian11 --import --sysinfo emulate \
    --disk path=$IMG/smbios-emulate.qcow2,size=10,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:14:01

vi everything 15 --machine q35 --memory 2048 --vcpus 2 --osinfo linux2022 --import \
    --boot kernel=/var/lib/libvirt/boot/vmlinuz,initrd=/var/lib/libvirt/boot/initrd.img,kernel_args="console=ttyS0,115200n8 root=LABEL=root quiet" \
    --sysinfo type=smbios,system.manufacturer="ACME Corp",system.product="Widget & Co <X>",oemStrings.entry0="acme:tag=blue" \
    --vsock cid.auto=yes \
    --qemu-commandline='-device isa-debugcon,iobase=0x402,chardev=dbg' \
    --disk path=$IMG/everything-root.qcow2,size=20,format=qcow2,bus=virtio \
    --disk path=$IMG/everything-data.qcow2,size=20,format=qcow2,bus=virtio \
    --network network=default,model=virtio,mac=52:54:00:00:15:01 \
    --network bridge=br0,model=virtio,mac=52:54:00:00:15:02 \
    --graphics none --console pty,target.type=serial

# The plain test driver (i686 "test" hypervisor), no faked capabilities.
virt-install --connect test:///default --print-xml --noautoconsole --name test-hv \
    --uuid 5a1b2c3d-0000-4000-8000-000000000016 --memory 512 --osinfo detect=on,require=off \
    --import --disk none --network user,mac=52:54:00:00:16:01 >vi-test-hv.xml

# libvirt-normalized forms: define (in the test driver) + dumpxml --inactive.
for f in vi-*.xml; do
    base=${f#vi-}
    name=${base%.xml}
    virsh -q -c test:///default "define $here/$f; dumpxml --inactive $name" >"vd-$base"
done
virsh -q -c test:///default "dumpxml test" >vd-test-builtin.xml

# ---- hand variants -------------------------------------------------------------------
# CRLF line endings (an existing sysinfo, so entries are appended between CRLF lines).
sed 's/$/\r/' vd-sysinfo.xml >hand-crlf.xml

# UTF-8 byte-order mark, XML declaration.
{ printf '\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n'; cat vd-i440fx-bios.xml; } >hand-bom.xml

# Comments and processing instructions at top level and inside elements.
awk '
    NR == 1 {
        print "<?xml version=\"1.0\"?>"
        print "<!-- Managed by hand. Do not edit: <domain> & friends -->"
        print "<?xml-stylesheet type=\"text/xsl\" href=\"domain.xsl\"?>"
    }
    { print }
    /^  <os>$/ { print "    <!-- boot straight into the kernel -->" }
    /<cmdline>/ { print "    <?app keep-cmdline?>" }
    /^  <devices>$/ { print "    <!-- devices: keep the emulator first -->"; print "    <?app devices-start?>" }
    END { print "<!-- trailing comment -->"; print "<?app end?>" }
' vd-kernel-boot.xml | sed 's|^  </devices>$|    <!-- last device above -->\n  </devices>|' >hand-comments-pi.xml

# Tab indentation.
sed -e ':a' -e 's/^\(\t*\)  /\1\t/' -e 'ta' vd-i440fx-bios.xml >hand-tabs.xml

# Four-space indentation.
awk '{ match($0, /^ */); printf "%*s%s\n", 2 * RLENGTH, "", substr($0, RLENGTH + 1) }' \
    vd-q35-uefi.xml >hand-indent4.xml

# Double-quoted attributes throughout (libvirt writes single quotes).
sed "s/'/\"/g" vd-sysinfo.xml >hand-double-quotes.xml

# Mixed quoting: the root and <os> single-quoted, everything under <devices> double-quoted.
awk '/<devices>/ { d = 1 } d { gsub("\x27", "\"") } { print } /<\/devices>/ { d = 0 }' \
    vd-vsock-auto.xml >hand-mixed-quotes.xml

# One line, no whitespace between elements, no final newline.
tr -d '\n' <vd-kernel-boot.xml | sed 's/>[[:space:]]*</></g' >hand-one-line.xml

# Foreign <metadata>: several namespaces, a default namespace, a comment, and the prefix
# "vsd" bound to some other URI.
awk '
    { print }
    /^  <\/libosinfo:libosinfo>$/ && !done {
        print "    <!-- tools write here too -->"
        print "    <app1:foo xmlns:app1=\"http://app1.org/app1/\">"
        print "      <app1:bar attr=\"x &amp; y\">text &lt;here&gt;</app1:bar>"
        print "    </app1:foo>"
        print "    <inventory xmlns=\"urn:example:inventory\" rack=\"r1\"><slot>3</slot></inventory>"
        print "    <vsd:other xmlns:vsd=\"urn:example:not-virt-systemd\">same prefix, other namespace</vsd:other>"
        done = 1
    }
' vd-i440fx-bios.xml >hand-foreign-metadata.xml

# Minimal domain: no <uuid> (inserted for --machine-id), no <devices>, no <metadata>.
cat >hand-minimal.xml <<'EOF'
<domain type='kvm'>
  <name>minimal</name>
  <memory unit='MiB'>512</memory>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
</domain>
EOF

# Self-closing containers: <metadata/>, <devices/>, and a <sysinfo> without <oemStrings>.
cat >hand-empty-containers.xml <<'EOF'
<domain type="kvm">
  <name>empty-containers</name>
  <uuid>5a1b2c3d-0000-4000-8000-000000000021</uuid>
  <metadata/>
  <memory unit="KiB">1048576</memory>
  <sysinfo type="smbios">
    <system>
      <entry name="manufacturer">ACME Corp</entry>
    </system>
  </sysinfo>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <boot dev="hd"/>
  </os>
  <devices/>
</domain>
EOF

# Direct kernel boot with an empty, self-closing <cmdline/>.
sed 's|<cmdline>.*</cmdline>|<cmdline/>|' vd-kernel-boot.xml |
    sed 's|<name>kernel-boot</name>|<name>kernel-boot-empty-cmdline</name>|;s|0000000004</uuid>|0000000022</uuid>|' \
        >hand-empty-cmdline.xml

echo "generate.sh: $(ls vi-*.xml vd-*.xml hand-*.xml | wc -l) files in $here"
