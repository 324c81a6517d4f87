# Guest-side helpers for scenarios (busybox sh). Source it first thing in a scenario:
#   . /vmtest/lib.sh
# Every assertion prints one line: `VMTEST ok NAME: what` or `VMTEST FAIL NAME: what`; `finish` prints
# `VMTEST PASS NAME` when none failed. The host fails the scenario on any FAIL line or a missing PASS.
# shellcheck shell=sh

T=$VMTEST_SCENARIO
FAILS=0

ok() { echo "VMTEST ok $T: $*"; }
fail() {
  echo "VMTEST FAIL $T: $*"
  FAILS=$((FAILS + 1))
}
# check "what it means" command...   (passes when the command succeeds)
check() {
  what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
# info: context for a human reading the log; never asserted on.
info() { echo "VMTEST info $T: $*"; }
finish() {
  if [ "$FAILS" -eq 0 ]; then
    echo "VMTEST PASS $T"
  else
    echo "VMTEST RESULT $T: $FAILS assertion(s) failed"
  fi
}

# --- disks (from /run/vmtest/disks, written by /init: "DEV SERIAL ROLE") ---------------------------
store_disks() { awk '$3 == "store" {print $1}' /run/vmtest/disks | sort; } # nvme0n1 ...
ebs_disk() { awk '$3 == "ebs" {print $1; exit}' /run/vmtest/disks; }
dev_of_serial() { awk -v s="$1" '$2 == s {print $1}' /run/vmtest/disks; }
first_mib_sum() { dd if="/dev/$1" bs=1M count=1 2>/dev/null | sha256sum | cut -d' ' -f1; }

# --- running nodeprep -----------------------------------------------------------------------------
# np LABEL ARGS...: runs `nodeprep ARGS`, keeps stdout in /tmp/LABEL.out, stderr in /tmp/LABEL.err and
# the exit code in $RC; echoes both streams to the console, prefixed, for whoever reads the log.
np() {
  label=$1
  shift
  echo "VMTEST run $T: nodeprep $*"
  t0=$(cut -d' ' -f1 /proc/uptime)
  nodeprep "$@" >"/tmp/$label.out" 2>"/tmp/$label.err"
  RC=$?
  sed "s/^/  [$label stdout] /" "/tmp/$label.out"
  sed "s/^/  [$label stderr] /" "/tmp/$label.err"
  echo "VMTEST info $T: nodeprep $* exited $RC after $(awk -v a="$t0" '{printf "%.1f", $1 - a}' /proc/uptime) s"
}
out_has() { grep -qF -- "$2" "/tmp/$1.out"; }    # out_has LABEL TEXT: stdout contains TEXT
out_lacks() { ! grep -qF -- "$2" "/tmp/$1.out"; } # out_lacks LABEL TEXT
# A command nodeprep ran: contract is a `storage: ` line with the command in backticks after "ran ".
ran_cmd() { grep -E '^storage: ' "/tmp/$1.out" | grep -qF -- "ran \`$2"; }

# --- mounts ----------------------------------------------------------------------------------------
# mountinfo fields: 3 major:minor, 4 root, 5 mount point, 6 options, ..., "-", fstype, source, super options
mnt_field() { # mnt_field MOUNTPOINT WHAT (dev|root|opts|fstype|source); the topmost mount there
  awk -v m="$1" -v w="$2" '$5 == m {
      for (i = 7; $i != "-"; i++) ;
      v = (w == "dev") ? $3 : (w == "root") ? $4 : (w == "opts") ? $6 : (w == "fstype") ? $(i + 1) : $(i + 2)
    } END { if (v != "") print v }' /proc/self/mountinfo
}
has_opt() { echo ",$(mnt_field "$1" opts)," | grep -qF ",$2,"; } # has_opt MOUNTPOINT OPTION
is_mounted() { [ -n "$(mnt_field "$1" dev)" ]; }

# --- md --------------------------------------------------------------------------------------------
md_active_raid0() { grep -E '^md[0-9]+ : active raid0 ' /proc/mdstat; }
md_any() { grep -qE '^md[0-9]+ :' /proc/mdstat; }
# md_has_member DEV: the active raid0 lists DEV (or a partition of it) as a member
md_has_member() { md_active_raid0 | grep -qE "(^| )$1(p[0-9]+)?\["; }
not() { ! "$@"; } # check "what" not COMMAND...
