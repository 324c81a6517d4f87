#!/bin/sh
# First boot of a new instance: 4 blank instance-store disks and an EBS root disk.
# `nodeprep boot` must build the RAID0, format it, mount it and bind the data directories onto it,
# carrying over what was already in them; a second run must change nothing.
. /vmtest/lib.sh

TARGETS='/var/lib/containerd /var/lib/kubelet /var/log/pods /var/lib/soci-snapshotter-grpc'
disks=$(store_disks)
ebs=$(ebs_disk)
ebs_sum=$(first_mib_sum "$ebs")
fstab_sum=$(sha256sum </etc/fstab)
mkdir -p /var/lib/containerd
echo "written before nodeprep boot: $VMTEST_TOKEN" >/var/lib/containerd/preexisting.txt

np boot1 boot
check "boot exits 0 (got $RC)" [ "$RC" -eq 0 ]
check "boot printed mdadm --create" out_has boot1 'mdadm --create'
check "an active raid0 in /proc/mdstat" md_active_raid0
for d in $disks; do check "instance-store /dev/$d is a member" md_has_member "$d"; done
check "EBS /dev/$ebs is not a member" not md_has_member "$ebs"
check "xfs mounted at /mnt/nodeprep (got '$(mnt_field /mnt/nodeprep fstype)')" \
  [ "$(mnt_field /mnt/nodeprep fstype)" = xfs ]
for o in nosuid nodev noatime; do check "/mnt/nodeprep mounted $o" has_opt /mnt/nodeprep "$o"; done
fs=$(mnt_field /mnt/nodeprep dev)
for t in $TARGETS; do
  check "$t bind-mounted from the array (dev '$(mnt_field "$t" dev)' root '$(mnt_field "$t" root)')" \
    [ -n "$fs" -a "$(mnt_field "$t" dev)" = "$fs" ]
done
check "preexisting.txt carried over onto the instance store" \
  [ "$(cat /var/lib/containerd/preexisting.txt 2>/dev/null)" = "written before nodeprep boot: $VMTEST_TOKEN" ]
info "$(grep -E '/mnt/nodeprep|/var/' /proc/self/mountinfo | cut -d' ' -f3-10 | tr '\n' ';')"

echo "$VMTEST_TOKEN" >/var/lib/kubelet/marker
sync
mounts=$(wc -l </proc/self/mountinfo)

np boot2 boot
check "second boot exits 0 (got $RC)" [ "$RC" -eq 0 ]
check "second boot printed 'storage: up to date'" out_has boot2 'storage: up to date'
check "second boot ran no mdadm" not ran_cmd boot2 mdadm
check "second boot ran no mkfs" not ran_cmd boot2 mkfs
check "second boot added no mounts ($mounts before, $(wc -l </proc/self/mountinfo) after)" \
  [ "$(wc -l </proc/self/mountinfo)" -eq "$mounts" ]

np check check --only storage
check "check --only storage exits 0 (got $RC)" [ "$RC" -eq 0 ]
check "/etc/fstab unchanged" [ "$(sha256sum </etc/fstab)" = "$fstab_sum" ]
check "no /etc/mdadm.conf" [ ! -e /etc/mdadm.conf ]
check "no /etc/mdadm/mdadm.conf" [ ! -e /etc/mdadm/mdadm.conf ]
check "EBS /dev/$ebs first MiB unchanged" [ "$(first_mib_sum "$ebs")" = "$ebs_sum" ]
finish
