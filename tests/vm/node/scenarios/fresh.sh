#!/bin/bash
# First boot of a new instance from the AMI: 4 blank instance-store disks, the AMI's config
# (limits.apply = "always"), no userData, no GPU driver (the stub nvidia-kmod-load loads nothing).
. /vmtest/lib.sh
. /vmtest/node-lib.sh
show_units

# --- order: after the NVIDIA driver units and nodeadm-config, before containerd and soci ---------
b=nodeprep-boot.service
check "boot started after nvidia-kmod-load finished" before nvidia-kmod-load.service ActiveEnterTimestampMonotonic $b ExecMainStartTimestampMonotonic
check "boot started after nvidia-fabricmanager finished" before nvidia-fabricmanager.service ActiveEnterTimestampMonotonic $b ExecMainStartTimestampMonotonic
check "boot started after nodeadm-config rewrote the spec" before nodeadm-config.service InactiveEnterTimestampMonotonic $b ExecMainStartTimestampMonotonic
check "containerd started after boot finished" before $b ActiveEnterTimestampMonotonic containerd.service ExecMainStartTimestampMonotonic
check "soci-snapshotter started after boot finished" before $b ActiveEnterTimestampMonotonic soci-snapshotter.service ExecMainStartTimestampMonotonic
check "nodeprep.service started after boot finished" before $b ActiveEnterTimestampMonotonic nodeprep.service ExecMainStartTimestampMonotonic
systemd-analyze critical-chain --no-pager $b containerd.service nodeprep.service 2>&1 | sed 's/^/  [critical-chain] /'
check "critical-chain: boot waited on nvidia-kmod-load" bash -c "systemd-analyze critical-chain --no-pager $b | grep -q nvidia-kmod-load.service"
check "critical-chain: containerd's chain goes through nodeprep-boot" bash -c "systemd-analyze critical-chain --no-pager containerd.service | grep -q nodeprep-boot.service"

# --- boot's result: success without a GPU driver (readiness is serve's) ----------------------------
check "nodeprep-boot.service succeeded (Result=$(prop $b Result), exit $(prop $b ExecMainStatus))" \
  bash -c "[[ \$(systemctl show -p Result --value $b) == success && \$(systemctl show -p ExecMainStatus --value $b) == 0 ]]"
nodeprep --output json status >/tmp/status.json 2>/tmp/status.err || true
check_json "the status file says not ready" /tmp/status.json '.ready == false'
check_json "storage passed" /tmp/status.json '.checks[] | select(.name == "storage") | .status == "pass"'
check_json "limits passed" /tmp/status.json '.checks[] | select(.name == "limits") | .status == "pass"'
check_json "nvidia failed: no driver" /tmp/status.json '.checks[] | select(.name == "nvidia") | .status == "fail"'
ujournal $b | grep -E '^(limits|storage|nvidia|boot): ' | sed 's/^/  [boot stdout] /'
check "boot said the node is prepared and readiness is serve's" bash -c "journalctl -b -o cat -u $b | grep -q 'boot: the node is prepared; a required check failed'"

# --- one journal story --------------------------------------------------------------------------
check "journalctl -u nodeprep-boot: stdout's lines (storage: done)" bash -c "journalctl -b -o cat -u $b | grep -q '^storage: done: '"
check "journalctl -u nodeprep-boot: tracing's last line (boot finished)" bash -c "journalctl -b -o cat -u $b | grep -q 'boot finished'"
check "journalctl -t nodeprep-boot: stdout's lines" bash -c "journalctl -b -o cat -t nodeprep-boot | grep -q '^storage: done: '"
check "journalctl -t nodeprep-boot: tracing's lines" bash -c "journalctl -b -o cat -t nodeprep-boot | grep -q 'boot finished'"
check "journalctl -t nodeprep: none of boot's lines" bash -c "! journalctl -b -o cat -t nodeprep | grep -q 'boot finished'"
check "journalctl -t nodeprep: serve's lines" bash -c "journalctl -b -o cat -t nodeprep | grep -q ."

# --- storage: md RAID0 of the 4 store disks, xfs, binds ---------------------------------------------
check_raid0
check "xfs at /mnt/nodeprep" [ "$(mnt_field /mnt/nodeprep fstype)" = xfs ]
check_binds "${BINDS[@]}"
check "no fstab or mdadm.conf entry written" bash -c '! grep -q nodeprep /etc/fstab 2>/dev/null && ! grep -qs "nodeprep" /etc/mdadm/mdadm.conf'
soci=$(main_pid soci-snapshotter.service)
check "soci-snapshotter's database is on the array (fd 3 of pid $soci)" [ "$(device_of "/proc/$soci/fd/3")" = "$(device_of /mnt/nodeprep)" ]

# --- limits: containerd's own, and a CRI pod's --------------------------------------------------------
c=$(main_pid containerd.service)
info "containerd pid $c: memlock $(limit_of "$c" 'Max locked memory'), stack $(limit_of "$c" 'Max stack size')"
check "containerd runs with memlock unlimited" bash -c "[[ '$(limit_of "$c" 'Max locked memory')' == 'unlimited unlimited' ]]"
check "containerd runs with stack unlimited" bash -c "[[ '$(limit_of "$c" 'Max stack size')' == 'unlimited unlimited' ]]"
check "the drop-in is in place" test -f /etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf
canary /tmp/canary.json
check_json "the canary pod ran (limits-canary pass)" /tmp/canary.json '.checks[0].status == "pass"'
check_json "the canary pod has memlock unlimited" /tmp/canary.json '.checks[0].found.pod.memlock.soft == "unlimited"'
check_json "the canary pod has stack unlimited" /tmp/canary.json '.checks[0].found.pod.stack.soft == "unlimited"'
reload=$(journalctl -b -o json -u $b | jq -r 'select((.MESSAGE | type) == "string" and (.MESSAGE | test("daemon-reload")) and .F_ELAPSED_MS != null) | .F_ELAPSED_MS' | head -n1)
echo "VMTEST timing $T: daemon_reload_ms=${reload:-none}"
check "boot ran one daemon-reload (a new drop-in), timed in the journal (${reload:-no} ms)" bash -c "[[ \$(journalctl -b -o cat -u $b | grep -c '^limits: done: ran .systemctl daemon-reload.') == 1 && -n '$reload' ]]"

# --- serve: active through notify; /readyz answers ----------------------------------------------
s=nodeprep.service
check "nodeprep.service is active (Type=notify: READY=1 was sent)" bash -c "[[ \$(systemctl show -p ActiveState --value $s) == active && \$(systemctl show -p Type --value $s) == notify ]]"
code=$(http_code http://127.0.0.1:9477/readyz)
info "/readyz $code: $(head -c 300 /tmp/http.body)"
check "/readyz answers 503 (no GPU driver), naming nvidia" bash -c "[[ $code == 503 ]] && grep -q nvidia /tmp/http.body"
check "/livez answers 200" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9477/livez) == 200 ]]"
timings

# --- data the reboot scenario looks for ------------------------------------------------------------
mkdir -p /var/lib/vmtest
echo "vmtest-$(cat /proc/sys/kernel/random/uuid)" >/var/lib/containerd/vmtest-marker
cp /var/lib/containerd/vmtest-marker /var/lib/vmtest/marker
xfs_uuid "$(mnt_field /mnt/nodeprep source)" >/var/lib/vmtest/xfs-uuid
info "array $(mnt_field /mnt/nodeprep source), xfs uuid $(cat /var/lib/vmtest/xfs-uuid)"

# --- watchdog: a stopped serve is restarted by systemd within WatchdogSec ---------------------------
# WatchdogSec is 90 s in the unit; 15 s here (a runtime drop-in) so that TCG time stays short.
mkdir -p /run/systemd/system/nodeprep.service.d
printf '[Service]\nWatchdogSec=15s\n' >/run/systemd/system/nodeprep.service.d/vmtest-watchdog.conf
systemctl daemon-reload
systemctl restart $s
old=$(main_pid $s)
restarts=$(prop $s NRestarts)
kill -STOP "$old"
t0=$(cut -d' ' -f1 /proc/uptime)
for _ in $(seq 1 120); do
  new=$(main_pid $s)
  [[ $new != "$old" && $new != 0 && $(prop $s ActiveState) == active ]] && break
  sleep 0.5
done
took=$(awk -v a="$t0" '{printf "%.1f", $1 - a}' /proc/uptime)
info "serve pid $old stopped; now pid $new ($(prop $s ActiveState)) after $took s, NRestarts $(prop $s NRestarts)"
check "systemd restarted the stopped serve (watchdog)" bash -c "[[ '$new' != '$old' && \$(systemctl show -p NRestarts --value $s) -gt $restarts ]]"
check "the journal says why: watchdog timeout" bash -c "journalctl -b -o cat -u $s | grep -qi 'watchdog timeout'"
rm -f /run/systemd/system/nodeprep.service.d/vmtest-watchdog.conf
finish
