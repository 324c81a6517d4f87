#!/usr/bin/env bash
# Instance-storage tests of `nodeprep boot` on real NVMe, mdadm RAID0 and xfs, inside a qemu VM (TCG: no
# KVM and no md in the host kernel needed). Each scenario boots the VM once on raw disk images.
#
#   tests/vm/storage.sh [SCENARIO...]
#
# Scenarios (default: fresh reboot stopstart foreign):
#   fresh      4 blank instance-store disks + 1 EBS disk: boot creates, formats, mounts, binds; rerun is a no-op
#   reboot     the images of `fresh` again (EC2 reboot keeps the instance store): assemble, never create
#   stopstart  4 new blank disks (EC2 stop/start): create anew
#   foreign    one disk carries a host-made ext4 with a file: boot refuses (exit 1), touches nothing
#   harness    harness self-test without nodeprep (mdadm/mkfs.xfs/mount by hand, then a second boot)
#   all        harness, then the four above
#
# Environment:
#   NODEPREP_BIN   nodeprep binary to test (default: `cargo build -p nodeprep`, then target/debug/nodeprep)
#   VM_TIMEOUT     seconds allowed per VM boot (default 300)
#   VM_OUT         build and disk images directory (default target/vm)
#
# Needs (installed here with apt-get when run as root on Debian): qemu-system-x86 busybox-static mdadm
# xfsprogs e2fsprogs cpio util-linux mount libc-bin binutils coreutils; and network for the first run
# (apt-get download of the kernel package, cached in target/vm-cache).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

OUT=${VM_OUT:-$REPO_ROOT/target/vm}
TIMEOUT=${VM_TIMEOUT:-300}
DISK_SIZE=256M
EBS_SERIAL=vol0123456789abcdef0 # an EBS volume id without the dash: what EC2 reports as serial

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(fresh reboot stopstart foreign kmsg)
expanded=()
for s in "${scenarios[@]}"; do
  case $s in
  all) expanded+=(harness-create harness-reboot fresh reboot stopstart foreign kmsg) ;;
  harness) expanded+=(harness-create harness-reboot) ;;
  fresh | reboot | stopstart | foreign | kmsg | harness-create | harness-reboot) expanded+=("$s") ;;
  *) vm_die "unknown scenario $s (fresh reboot stopstart foreign kmsg harness all)" ;;
  esac
done
scenarios=("${expanded[@]}")
# reboot boots the disks of fresh (and expects its token), harness-reboot those of harness-create.
seen=' '
for s in "${scenarios[@]}"; do
  [[ $s != reboot || $seen == *' fresh '* ]] || vm_die "reboot needs fresh before it (tests/vm/storage.sh fresh reboot)"
  [[ $s != harness-reboot || $seen == *' harness-create '* ]] || vm_die "harness-reboot needs harness-create before it"
  seen+="$s "
done

t_total=$SECONDS
declare -A result=() took=()

host_ok() { echo "HOST ok $1: $2"; }
host_fail() {
  echo "HOST FAIL $1: $2"
  result[$1]=FAIL
}

# ---------------------------------------------------------------------------------------------------
vm_step "host packages"
vm_ensure_deps
vm_step_end

vm_step "nodeprep binary"
if [[ -z ${NODEPREP_BIN:-} ]]; then
  cargo build -p nodeprep --locked --quiet
  NODEPREP_BIN=$REPO_ROOT/target/debug/nodeprep
fi
vm_log "testing $NODEPREP_BIN ($("$NODEPREP_BIN" --version 2>&1))"
vm_step_end

if [[ " ${scenarios[*]} " == *' kmsg '* ]]; then
  # The kmsg scenario serves a p5.48xlarge fixture tree whose dev/kmsg is the guest's own
  # /dev/kmsg, with the fake NVML: the GPUs are faked, the kernel log is real.
  vm_step "fixture tree and fake NVML for kmsg"
  cargo build -p nodeprep-fixtures --locked --quiet
  rm -rf "$OUT/extra"
  mkdir -p "$OUT/extra"
  "$REPO_ROOT/target/debug/nodeprep-fixtures" p5.48xlarge "$OUT/extra/p5"
  cp "$("$REPO_ROOT/target/debug/nodeprep-fixtures" fake-nvml)" "$OUT/extra/libnvidia-ml.so.1"
  export VM_EXTRA_DIR=$OUT/extra
  vm_step_end
fi

vm_step "kernel + initramfs"
"$VM_DIR/build.sh" "$OUT" "$NODEPREP_BIN"
vm_step_end

# ---------------------------------------------------------------------------------------------------
# Disk images. Instance-store images are sparse files of zeros (what a new EC2 instance-store disk
# reads as). The EBS image gets random bytes in its first MiB; its checksum must never change.
DISKS=$OUT/disks
mkdir -p "$DISKS"
blank_set() { # blank_set NAME DIGIT...: 4 new blank images; prints their DISK arguments for run.sh
  local name=$1
  shift
  vm_blank_disks "$DISKS/$name" "$DISK_SIZE" "$@" | sed 's/^/store:/'
}

EBS_IMG=$DISKS/ebs.img
rm -f "$EBS_IMG"
truncate -s 16M "$EBS_IMG"
dd if=/dev/urandom of="$EBS_IMG" bs=1M count=1 conv=notrunc status=none
EBS_SUM=$(head -c 1M "$EBS_IMG" | sha256sum)
EBS_ARG=ebs:$EBS_SERIAL:$EBS_IMG
TOKEN=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')

check_ebs() { # the EBS image is never written
  if [[ $(head -c 1M "$EBS_IMG" | sha256sum) == "$EBS_SUM" ]]; then
    host_ok "$1" "EBS image first MiB unchanged"
  else
    host_fail "$1" "EBS image first MiB changed"
  fi
}

# boot SCENARIO DISK...: one VM run; records PASS/FAIL and seconds.
boot() {
  local s=$1 rc=0
  shift
  vm_step "scenario $s"
  "$VM_DIR/run.sh" -o "$OUT" -t "$TIMEOUT" -s "$s" -l "$OUT/$s.log" -a "vmtest.token=$TOKEN" "$EBS_ARG" "$@" || rc=$?
  result[$s]=$([[ $rc == 0 ]] && echo PASS || echo FAIL)
  check_ebs "$s"
  took[$s]=$(vm_step_seconds)
  vm_step_end "${result[$s]} (console: $OUT/$s.log)"
}

for s in "${scenarios[@]}"; do
  case $s in
  harness-create)
    blank_set harness 1 2 3 4 >"$DISKS/harness.args"
    mapfile -t args <"$DISKS/harness.args"
    boot "$s" "${args[@]}"
    ;;
  harness-reboot)
    mapfile -t args <"$DISKS/harness.args"
    boot "$s" "${args[@]}"
    ;;
  fresh)
    blank_set fresh 1 2 3 4 >"$DISKS/fresh.args"
    mapfile -t args <"$DISKS/fresh.args"
    boot "$s" "${args[@]}"
    ;;
  reboot)
    # Same images as `fresh`, which ran earlier in this invocation (it wrote the token there).
    mapfile -t args <"$DISKS/fresh.args"
    boot "$s" "${args[@]}"
    ;;
  stopstart)
    blank_set stopstart 5 6 7 8 >"$DISKS/stopstart.args"
    mapfile -t args <"$DISKS/stopstart.args"
    boot "$s" "${args[@]}"
    ;;
  kmsg)
    boot "$s"
    ;;
  foreign)
    blank_set foreign 9 A B C >"$DISKS/foreign.args"
    mapfile -t args <"$DISKS/foreign.args"
    # The third disk gets an ext4 with one file, made without mounting (mkfs.ext4 -d).
    img=$DISKS/foreign/is3.img
    mkdir -p "$DISKS/foreign/content"
    echo "someone else's data $TOKEN" >"$DISKS/foreign/content/file"
    mkfs.ext4 -q -F -L scratch -d "$DISKS/foreign/content" "$img"
    boot "$s" "${args[@]}"
    if e2fsck -fn "$img" >"$OUT/foreign.e2fsck" 2>&1; then
      host_ok foreign "e2fsck -fn: the ext4 is intact"
    else
      host_fail foreign "e2fsck -fn found damage: $(tail -n 3 "$OUT/foreign.e2fsck" | tr '\n' ' ')"
    fi
    if [[ $(debugfs -R 'cat /file' "$img" 2>/dev/null) == "someone else's data $TOKEN" ]]; then
      host_ok foreign "debugfs: /file still reads back"
    else
      host_fail foreign "debugfs: /file is gone or changed"
    fi
    for i in 1 2 4; do # the other disks were not written (no md superblock, no partial array)
      other=$DISKS/foreign/is$i.img
      if cmp -s -n "$(stat -c %s "$other")" "$other" /dev/zero; then
        host_ok foreign "is$i.img still all zeros"
      else
        host_fail foreign "is$i.img was written to"
      fi
    done
    ;;
  esac
done

# ---------------------------------------------------------------------------------------------------
echo
echo "storage VM tests ($(cat "$OUT/kernel-version"), $(basename "$NODEPREP_BIN")):"
failed=0
for s in "${scenarios[@]}"; do
  printf '  %-16s %-4s %4s s\n' "$s" "${result[$s]}" "${took[$s]}"
  [[ ${result[$s]} == PASS ]] || failed=$((failed + 1))
done
echo "  total $((SECONDS - t_total)) s; $failed of ${#scenarios[@]} scenario(s) failed"
((failed == 0))
