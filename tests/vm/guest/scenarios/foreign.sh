#!/bin/sh
# One instance-store disk carries an ext4 filesystem that is not ours (made on the host, with a file).
# `nodeprep boot` must refuse: exit 1, name the disk and what is on it, build no array and touch nothing.
# The host then checks the image with e2fsck -fn and reads the file back with debugfs.
. /vmtest/lib.sh

TARGETS='/var/lib/containerd /var/lib/kubelet /var/log/pods /var/lib/soci-snapshotter-grpc'
foreign=''
for d in $(store_disks); do
  [ "$(blkid -p -o value -s TYPE "/dev/$d" 2>/dev/null)" = ext4 ] && foreign="$foreign $d"
done
foreign=${foreign# }
check "exactly one instance-store disk carries ext4 before the test (/dev/$foreign)" [ "$(echo "$foreign" | wc -w)" -eq 1 ]

np boot boot
check "boot exits 1 (got $RC)" [ "$RC" -eq 1 ]
check "a message names /dev/$foreign and ext4" \
  sh -c "cat /tmp/boot.out /tmp/boot.err | grep -F '/dev/$foreign' | grep -q ext4"
check "no md array in /proc/mdstat" not md_any
check "nothing mounted at /mnt/nodeprep" not is_mounted /mnt/nodeprep
for t in $TARGETS; do check "nothing mounted at $t" not is_mounted "$t"; done
check "/dev/$foreign still ext4" [ "$(blkid -p -o value -s TYPE "/dev/$foreign" 2>/dev/null)" = ext4 ]
for d in $(store_disks); do
  [ "$d" = "$foreign" ] && continue
  check "/dev/$d still blank (blkid -p finds nothing)" not blkid -p "/dev/$d"
done
finish
