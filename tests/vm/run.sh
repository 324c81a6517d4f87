#!/usr/bin/env bash
# Boots the test VM once (qemu-system-x86_64, TCG: no KVM) and judges the console log.
#
#   tests/vm/run.sh [-o BUILD_DIR] [-t SECONDS] [-a 'WORDS'] -s SCENARIO -l LOG  DISK...
#
#   DISK          ROLE:SERIAL:IMAGE, ROLE `store` (instance store) or `ebs` (root volume); each raw image
#                 becomes an NVMe controller with that serial, in the order given. The guest fakes the EC2
#                 model of each disk from its role (see guest/init).
#   -o BUILD_DIR  where build.sh put vmlinuz and initramfs.cpio (default target/vm)
#   -s SCENARIO   guest/scenarios/SCENARIO.sh runs in the guest
#   -l LOG        serial console log (overwritten)
#   -t SECONDS    wall-clock limit for the whole VM (default 300); on expiry qemu is killed
#   -a 'WORDS'    more kernel command-line words, e.g. vmtest.token=abc
#
# Environment: VM_ACCEL=kvm where /dev/kvm is usable (default tcg: pure emulation, works anywhere).
#
# Exit status: 0 when the guest printed `VMTEST PASS SCENARIO` and no `VMTEST FAIL`; 1 otherwise
# (timeout, crash, failed assertion), after printing the FAIL lines or the tail of the console.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

build=$REPO_ROOT/target/vm timeout_s=300 extra='' scenario='' log=''
while getopts 'o:t:a:s:l:' opt; do
  case $opt in
  o) build=$OPTARG ;;
  t) timeout_s=$OPTARG ;;
  a) extra=$OPTARG ;;
  s) scenario=$OPTARG ;;
  l) log=$OPTARG ;;
  *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ -n $scenario && -n $log && $# -gt 0 ]] || vm_die "usage: $0 [-o BUILD_DIR] [-t SECONDS] [-a WORDS] -s SCENARIO -l LOG ROLE:SERIAL:IMAGE..."
[[ -f $build/vmlinuz && -f $build/initramfs.cpio ]] || vm_die "$build: no vmlinuz/initramfs.cpio (run tests/vm/build.sh)"

disk_args=() disk_map=() k=0
for disk in "$@"; do
  IFS=: read -r role serial image <<<"$disk"
  [[ $role == store || $role == ebs ]] || vm_die "$disk: role must be store or ebs"
  [[ -f $image ]] || vm_die "$disk: no image file $image"
  # NVMe serials are at most 20 characters; qemu would truncate a longer one silently.
  ((${#serial} <= 20)) || vm_die "$disk: serial longer than 20 characters"
  disk_args+=(-drive "file=$image,if=none,id=d$k,format=raw,cache=writeback"
    -device "nvme,serial=$serial,drive=d$k")
  disk_map+=("$serial:$role")
  k=$((k + 1))
done

# quiet + loglevel=4: kernel warnings still reach the console, chatter does not interleave the markers.
# panic=-1 with -no-reboot: a kernel panic (or /init dying) ends qemu at once instead of hanging.
# random.trust_cpu=on with -cpu max (TCG emulates RDRAND): getrandom() does not wait for entropy.
# mitigations=off: the guest is a throwaway test box, and the mitigations cost time under TCG.
cmdline="console=ttyS0 quiet loglevel=4 panic=-1 random.trust_cpu=on mitigations=off"
cmdline+=" vmtest.scenario=$scenario vmtest.disks=$(IFS=,; echo "${disk_map[*]}") $extra"

t0=$SECONDS
rc=0
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
  -machine q35 -accel "${VM_ACCEL:-tcg}" -cpu max -smp 1 -m 1024 \
  -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
  -kernel "$build/vmlinuz" -initrd "$build/initramfs.cpio" -append "$cmdline" \
  "${disk_args[@]}" </dev/null >"$log" 2>&1 || rc=$?
# The serial console writes CRLF line ends; drop the CRs so that greps and tails read cleanly.
sed -i 's/\r$//' "$log"
elapsed=$((SECONDS - t0))

vm_judge "$scenario" "$log" "$rc" "$timeout_s" "$elapsed"
