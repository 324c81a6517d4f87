#!/bin/sh
# Stop/start of the instance: EC2 hands over new, blank instance-store disks. `nodeprep boot` must
# simply create anew; nothing from an earlier life of the node may be expected or complained about.
. /vmtest/lib.sh

TARGETS='/var/lib/containerd /var/lib/kubelet /var/log/pods /var/lib/soci-snapshotter-grpc'
disks=$(store_disks)

np boot boot
check "boot exits 0 (got $RC)" [ "$RC" -eq 0 ]
check "boot printed mdadm --create" out_has boot 'mdadm --create'
for d in $disks; do check "instance-store /dev/$d is a member" md_has_member "$d"; done
check "xfs mounted at /mnt/nodeprep" [ "$(mnt_field /mnt/nodeprep fstype)" = xfs ]
fs=$(mnt_field /mnt/nodeprep dev)
for t in $TARGETS; do check "$t bind-mounted from the array" [ -n "$fs" -a "$(mnt_field "$t" dev)" = "$fs" ]; done
check "no /var/lib/kubelet/marker (the disks are new)" [ ! -e /var/lib/kubelet/marker ]
# "error" or "stale" in what it printed; stderr log lines are judged by level (an IMDS WARN is normal here).
check "stdout mentions no error or stale state" not grep -iwE 'error|stale' /tmp/boot.out
check "stderr has no ERROR log line and no stale state" not grep -E ' ERROR |[Ss]tale' /tmp/boot.err

np check check --only storage
check "check --only storage exits 0 (got $RC)" [ "$RC" -eq 0 ]
finish
