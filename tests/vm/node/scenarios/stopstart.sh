#!/bin/bash
# EC2 stop/start: the same root volume (and so the AMI's config and the drop-in), new blank
# instance-store disks. nodeprep-boot builds storage anew without complaint; the config is kept.
. /vmtest/lib.sh
. /vmtest/node-lib.sh
show_units
b=nodeprep-boot.service
ujournal $b | sed 's/^/  [journal -u] /' | tail -n 30
check "nodeprep-boot.service succeeded" bash -c "[[ \$(systemctl show -p Result --value $b) == success ]]"
check "a new array was created" bash -c "journalctl -b -o cat -u $b | grep -q 'mdadm --create'"
check "and formatted" bash -c "journalctl -b -o cat -u $b | grep -q 'mkfs.xfs'"
check "no refusal, no failure" bash -c "! journalctl -b -o cat -u $b | grep -qiE 'refus|FAIL:'"
check_raid0
check "a new filesystem (not fresh's)" [ "$(xfs_uuid "$(mnt_field /mnt/nodeprep source)")" != "$(cat /var/lib/vmtest/xfs-uuid)" ]
check "the old store's data is gone with it" bash -c "[[ ! -e /var/lib/containerd/vmtest-marker ]]"
check "the AMI's config is kept (limits.apply = always)" bash -c "nodeprep config show | grep -q '^apply = \"always\"'"
c=$(main_pid containerd.service)
check "containerd runs with memlock unlimited" bash -c "[[ '$(limit_of "$c" 'Max locked memory')' == 'unlimited unlimited' ]]"
check_binds /var/lib/containerd /var/lib/kubelet
timings
# An upgrade of the package on the running node (dpkg -i of the .deb again: postinst configure with
# the installed version): nodeprep.service restarts on the new binary; nodeprep-boot does not rerun.
s=nodeprep.service
# Edit the config first (a comment): the path unit's reconfigure finds nothing to apply, and
# restarts serve; wait for that before taking serve's pid.
sed -i '1i # edited on the node' /etc/nodeprep/config.toml
for _ in $(seq 1 100); do
  journalctl -b -o cat -u nodeprep-reconfigure.service | grep -q 'the configuration is the one the last boot applied' && break
  sleep 0.3
done
sleep 2
old=$(main_pid $s) boot_start=$(prop $b ExecMainStartTimestampMonotonic)
dpkg -i /usr/share/vmtest/nodeprep.deb 2>&1 | sed 's/^/  [dpkg] /'
for _ in $(seq 1 60); do
  [[ $(main_pid $s) != "$old" && $(prop $s ActiveState) == active ]] && break
  sleep 0.5
done
check "the upgrade restarted nodeprep.service (pid $old -> $(main_pid $s))" bash -c "[[ \$(systemctl show -p MainPID --value $s) != '$old' && \$(systemctl show -p ActiveState --value $s) == active ]]"
check "and did not rerun nodeprep-boot" bash -c "[[ \$(systemctl show -p ExecMainStartTimestampMonotonic --value $b) == '$boot_start' ]]"
check "the edited config is kept" bash -c "head -n1 /etc/nodeprep/config.toml | grep -q 'edited on the node'"
finish
