#!/bin/bash
# A reboot of the instance of `fresh`: the same root disk and instance-store disks. udev and mdadm
# may assemble the array on their own; nodeprep-boot must assemble or accept it, never create or
# format, and containerd's data must still be there.
. /vmtest/lib.sh
. /vmtest/node-lib.sh
show_units
b=nodeprep-boot.service
ujournal $b | sed 's/^/  [journal -u] /' | tail -n 30
check "nodeprep-boot.service succeeded" bash -c "[[ \$(systemctl show -p Result --value $b) == success ]]"
check "no mdadm --create" bash -c "! journalctl -b -o cat -u $b | grep -q 'mdadm --create'"
check "no mkfs" bash -c "! journalctl -b -o cat -u $b | grep -q 'mkfs'"
check_raid0
check "the xfs is the one fresh made (uuid $(cat /var/lib/vmtest/xfs-uuid))" [ "$(xfs_uuid "$(mnt_field /mnt/nodeprep source)")" = "$(cat /var/lib/vmtest/xfs-uuid)" ]
check "the data under /var/lib/containerd is back" bash -c "cmp -s /var/lib/containerd/vmtest-marker /var/lib/vmtest/marker"
check_binds "${BINDS[@]}"
# The drop-in is unchanged since the first boot: no unit file changed, so no daemon-reload.
check "no daemon-reload on a reboot" bash -c "! journalctl -b -o cat -u $b | grep -q 'daemon-reload'"
check "the drop-in was not rewritten" bash -c "! journalctl -b -o cat -u $b | grep -q '^limits: done: wrote /etc/systemd/system/containerd.service.d/'"
# nodeadm-config rewrote base-runtime-spec.json this boot, as on AL2023; boot, after it, set the
# rlimits again.
check "boot set the spec's rlimits again after nodeadm-config rewrote it" bash -c "journalctl -b -o cat -u $b | grep -q '^limits: done: wrote /etc/containerd/base-runtime-spec.json'"
check "the spec has memlock unlimited" bash -c "jq -e '.process.rlimits[] | select(.type == \"RLIMIT_MEMLOCK\") | .soft == 18446744073709551615' /etc/containerd/base-runtime-spec.json"
c=$(main_pid containerd.service)
check "containerd runs with memlock unlimited" bash -c "[[ '$(limit_of "$c" 'Max locked memory')' == 'unlimited unlimited' ]]"
check "nodeprep.service is active" bash -c "[[ \$(systemctl show -p ActiveState --value nodeprep.service) == active ]]"
timings
finish
