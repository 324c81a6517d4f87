#!/bin/sh
# Reboot of the instance from `fresh`: same disk images, so the instance store kept its array. A
# reboot loses every mount and the assembled array (no udev, no mdadm.conf here): `nodeprep boot` must
# assemble the existing array, never create or format, and the data written before must be back.
. /vmtest/lib.sh

TARGETS='/var/lib/containerd /var/lib/kubelet /var/log/pods /var/lib/soci-snapshotter-grpc'
disks=$(store_disks)
check "no array before nodeprep (nothing assembles it at boot)" not md_any

np boot boot
check "boot exits 0 (got $RC)" [ "$RC" -eq 0 ]
check "boot printed mdadm --assemble" out_has boot 'mdadm --assemble'
check "boot printed no mdadm --create" out_lacks boot 'mdadm --create'
check "boot printed no mkfs" out_lacks boot 'mkfs'
for d in $disks; do check "instance-store /dev/$d is a member" md_has_member "$d"; done
check "xfs mounted at /mnt/nodeprep" [ "$(mnt_field /mnt/nodeprep fstype)" = xfs ]
fs=$(mnt_field /mnt/nodeprep dev)
for t in $TARGETS; do check "$t bind-mounted from the array" [ -n "$fs" -a "$(mnt_field "$t" dev)" = "$fs" ]; done
check "/var/lib/kubelet/marker has the token of the first boot (got '$(cat /var/lib/kubelet/marker 2>&1)')" \
  [ "$(cat /var/lib/kubelet/marker 2>/dev/null)" = "$VMTEST_TOKEN" ]
check "preexisting.txt from the first boot is still there" [ -f /var/lib/containerd/preexisting.txt ]

np check check --only storage
check "check --only storage exits 0 (got $RC)" [ "$RC" -eq 0 ]
finish
