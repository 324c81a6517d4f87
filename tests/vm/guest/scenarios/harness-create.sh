#!/bin/sh
# Harness self-test, first boot (no nodeprep): proves the VM, modules, model faking and the tools by
# doing by hand what `nodeprep boot` will do: mdadm RAID0, mkfs.xfs, mount, bind mount, write a marker.
. /vmtest/lib.sh

disks=$(store_disks)
ebs=$(ebs_disk)
first=$(echo "$disks" | head -n1)
check "4 instance-store disks ($(echo "$disks" | tr "\n" " "))" [ "$(echo "$disks" | wc -w)" -eq 4 ]
check "an EBS disk (/dev/$ebs)" [ -n "$ebs" ]
check "model faked, read through the device symlink" \
  grep -qx 'Amazon EC2 NVMe Instance Storage *' "/sys/block/$first/device/model"
check "model is 40 characters and a newline, like sysfs" [ "$(wc -c <"/sys/block/$first/device/model")" -eq 41 ]
check "EBS model faked" grep -q '^Amazon Elastic Block Store' "/sys/block/$ebs/device/model"
ebs_sum=$(first_mib_sum "$ebs")

devs=$(for d in $disks; do printf '/dev/%s ' "$d"; done)
check "mdadm --create" mdadm --create /dev/md127 --run --level=0 --raid-devices=4 --name=nodeprep $devs </dev/null
check "array active with the 4 disks" md_active_raid0
for d in $disks; do check "/dev/$d is a member" md_has_member "$d"; done
check "EBS is not a member" not md_has_member "$ebs"
check "mkfs.xfs" mkfs.xfs -q -K -L nodeprep /dev/md127
mkdir -p /mnt/nodeprep /var/lib/kubelet
check "mount xfs" mount -t xfs -o nosuid,nodev,noatime /dev/md127 /mnt/nodeprep
mkdir -p /mnt/nodeprep/kubelet
check "bind mount" mount --bind /mnt/nodeprep/kubelet /var/lib/kubelet
check "mountinfo: xfs at /mnt/nodeprep" [ "$(mnt_field /mnt/nodeprep fstype)" = xfs ]
for o in nosuid nodev noatime; do check "mountinfo: $o" has_opt /mnt/nodeprep "$o"; done
check "mountinfo: bind is the same filesystem" [ "$(mnt_field /var/lib/kubelet dev)" = "$(mnt_field /mnt/nodeprep dev)" ]
check "mountinfo: bind root is /kubelet" [ "$(mnt_field /var/lib/kubelet root)" = /kubelet ]
echo "$VMTEST_TOKEN" >/var/lib/kubelet/marker
sync
check "EBS first MiB unchanged" [ "$(first_mib_sum "$ebs")" = "$ebs_sum" ]
info "$(blkid | tr '\n' ';')"
finish
