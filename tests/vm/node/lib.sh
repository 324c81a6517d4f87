# Full-node guest helpers, sourced after the busybox guest's lib.sh (ok/fail/check/info/finish, the
# disk, mount and md helpers). The guest is Debian with real systemd, so these read systemd's view.
# shellcheck shell=bash

prop() { systemctl show -p "$2" --value "$1"; } # prop UNIT PROPERTY
# Seconds since the kernel started (CLOCK_MONOTONIC) of a unit's monotonic timestamp property.
mono_s() { awk -v u="$(prop "$1" "$2")" 'BEGIN { printf "%.2f", u / 1e6 }'; }
# before A_UNIT A_PROP B_UNIT B_PROP: A's timestamp is set and not later than B's (both set).
before() {
  local a b
  a=$(prop "$1" "$2") b=$(prop "$3" "$4")
  [[ $a =~ ^[0-9]+$ && $b =~ ^[0-9]+$ && $a -gt 0 && $b -gt 0 && $a -le $b ]]
}
main_pid() { prop "$1" MainPID; }
limit_of() { # limit_of PID "Max locked memory" -> "unlimited unlimited" (soft hard)
  awk -v k="$2" 'index($0, k) == 1 { sub(k, ""); print $1, $2 }' "/proc/$1/limits"
}
# The journal of a unit in this boot, message text only.
ujournal() { journalctl -b -o cat --no-pager -u "$1"; }
http_code() { curl -s -o /tmp/http.body -w '%{http_code}' --max-time 10 "$1"; } # body in /tmp/http.body
device_of() { stat -L -c %d "$1"; } # the st_dev of what a path (or /proc/PID/fd/N) names
array_dev() { mnt_field /mnt/nodeprep dev; }
on_array() { [[ $(mnt_field "$1" dev) == "$(array_dev)" && -n $(array_dev) ]]; } # a bind on the array
xfs_uuid() { blkid -s UUID -o value "$1"; }
# The default bind targets (storage.bind).
BINDS=(/var/lib/containerd /var/lib/kubelet /var/log/pods /var/lib/soci-snapshotter-grpc)
check_raid0() { # an active raid0 with every instance-store disk in it
  local d
  check "an active raid0" md_active_raid0
  for d in $(store_disks); do check "raid0 has $d" md_has_member "$d"; done
}
check_binds() { # check_binds TARGET...: each is bound onto the array
  local t
  for t in "$@"; do check "$t is bound onto the array" on_array "$t"; done
}
store_is_zero() { # the first MiB of the disk is all zeros
  [[ $(dd if="/dev/$1" bs=1M count=1 2>/dev/null | tr -d '\0' | wc -c) == 0 ]]
}
check_json() { # check_json "what" FILE JQ-EXPRESSION (true when the expression is true)
  local what=$1 file=$2 expr=$3
  if jq -e "$expr" "$file" >/dev/null 2>&1; then ok "$what"; else fail "$what ($(jq -c "$expr" "$file" 2>&1 | head -c 300))"; fi
}

# Boot timings: kernel start -> nodeprep-boot done -> nodeprep.service ready (notify), in seconds of
# CLOCK_MONOTONIC (0 = kernel start), and systemd-analyze's own split.
timings() {
  local kernel
  kernel=$(systemd-analyze 2>/dev/null | sed -n 's/.* in \([0-9.]*m\?s\) (kernel).*/\1/p')
  echo "VMTEST timing $T: kernel=${kernel:-?} boot_started=$(mono_s nodeprep-boot.service ExecMainStartTimestampMonotonic)s boot_done=$(mono_s nodeprep-boot.service ExecMainExitTimestampMonotonic)s serve_ready=$(mono_s nodeprep.service ActiveEnterTimestampMonotonic)s containerd_started=$(mono_s containerd.service ActiveEnterTimestampMonotonic)s"
  info "$(systemd-analyze 2>/dev/null | head -n1)"
}

# The units of the AL2023 node in this VM, as `systemctl` shows them: for whoever reads the log.
show_units() {
  systemctl list-units --no-pager --no-legend --all 'nodeprep*' 'nvidia*' 'nodeadm*' cloud-final.service containerd.service kubelet.service soci-snapshotter.service 2>&1 | sed "s/^/  [units] /"
}

# canary FILE: `nodeprep check --only limits-canary` as JSON into FILE. The canary's deadline is
# 10 s; under TCG with the machine busy a pod can take longer: such a run (and only such a run,
# "did not finish within") is tried again, at most twice, and said so.
canary() {
  local i
  for i in 1 2 3; do
    nodeprep --output json check --only limits-canary >"$1" 2>/tmp/canary.err || true
    jq -e '.checks[0].summary | test("did not finish within")' "$1" >/dev/null 2>&1 || break
    info "canary run $i hit its deadline under emulation ($(jq -r '.checks[0].summary' "$1")); again"
  done
  info "canary: $(jq -c '.checks[0] | {status, summary, pod: .found.pod, run_ms: .found.run_ms}' "$1" 2>&1 | head -c 600)"
}
