#!/bin/sh
# Harness self-test, second boot on the same disk images: the array, filesystem and marker written by
# harness-create must come back (assembled by hand, as nodeprep will).
. /vmtest/lib.sh

check "no array before assembly (the kernel does not auto-assemble 1.2 metadata)" not md_any
check "mdadm --assemble --scan" mdadm --assemble --scan --run </dev/null
check "array active with 4 members" [ "$(md_active_raid0 | grep -o '\[[0-9]*\]' | wc -l)" -eq 4 ]
md=$(md_active_raid0 | cut -d' ' -f1)
mkdir -p /mnt/nodeprep /var/lib/kubelet
check "mount /dev/$md" mount -t xfs -o nosuid,nodev,noatime "/dev/$md" /mnt/nodeprep
check "bind mount" mount --bind /mnt/nodeprep/kubelet /var/lib/kubelet
check "marker has the token from the first boot" [ "$(cat /var/lib/kubelet/marker 2>/dev/null)" = "$VMTEST_TOKEN" ]
info "$(nodeprep --version 2>&1)"
np check check
finish
