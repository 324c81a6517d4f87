#!/usr/bin/env bash
# Full-node VM test: nodeprep as a node boots it. A Debian 12 root filesystem built with debootstrap
# from Debian's packages (cached) boots under qemu (TCG) with real systemd, udev, mdadm, xfsprogs,
# containerd and runc; the .deb is installed with dpkg as an AMI build would, its units enabled;
# stub units stand in for the AL2023 NVIDIA AMI's (nvidia-kmod-load, nvidia-fabricmanager,
# nvidia-persistenced, nodeadm-config, cloud-final, nodeadm-run, kubelet, soci-snapshotter); a
# fake IMDS answers on 169.254.169.254 (qemu's user network, restricted: nothing else is reached);
# 4 NVMe instance-store disks and the NVMe root (EBS) disk.
#
#   tests/vm/node.sh [SCENARIO...]      # default: fresh reboot stopstart foreign late
#
# Scenarios:
#   fresh      first boot: unit order, boot's result without a driver, RAID0 + xfs + binds, limits in
#              containerd and in a CRI pod, serve active through notify, /readyz, one journal story;
#              then the watchdog (serve SIGSTOPped: systemd restarts it)
#   reboot     fresh's disks again: assemble, no re-format, containerd's data kept, no daemon-reload
#   stopstart  fresh's root disk, new blank instance-store disks: storage rebuilt, config kept
#   foreign    a new instance, one disk with a host-made ext4: refused, named, nothing formatted
#   late       a new instance whose userData script writes the config after boot ran: it takes effect
#
# Environment:
#   NODEPREP_DEB   the .deb to install (CI: scripts/release's target/dist/nodeprep_<version>_amd64.deb;
#                  default: `scripts/package deb` of target/debug/nodeprep, the same packaging)
#   VM_TIMEOUT     seconds allowed per VM boot (default 600)
#   VM_OUT         work directory (default target/vm-node); the debootstrap tree is cached in
#                  target/vm-cache/node-base-<key>
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

OUT=${VM_OUT:-$REPO_ROOT/target/vm-node}
TIMEOUT=${VM_TIMEOUT:-600}
NODE=$VM_DIR/node
SUITE=bookworm
MIRROR=${VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the node runs, from Debian's packages. jq and curl are the scenarios' own tools.
PACKAGES=systemd,systemd-sysv,udev,dbus,mdadm,xfsprogs,e2fsprogs,containerd,runc,iproute2,kmod,procps,curl,jq,ca-certificates
ROOT_SERIAL=vol0000000000000root
INSTANCE_TYPE=g6e.48xlarge # 4 instance-store disks, 8 GPUs, 4 EFA (catalog)
STORE_SIZE=256M
PARTUUID=6e6f6465-7072-6570-0000-000000000001

scenarios=("$@")
((${#scenarios[@]})) || scenarios=(fresh reboot stopstart foreign late)
for s in "${scenarios[@]}"; do
  case $s in
  fresh | reboot | stopstart | foreign | late) ;;
  *) vm_die "unknown scenario $s (fresh reboot stopstart foreign late)" ;;
  esac
done
seen=' '
for s in "${scenarios[@]}"; do
  [[ $s != reboot && $s != stopstart || $seen == *' fresh '* ]] || vm_die "$s needs fresh before it (tests/vm/node.sh fresh $s)"
  seen+="$s "
done

t_total=$SECONDS
declare -A result=() took=() timing=()

# ---------------------------------------------------------------------------------------------------
vm_step "host packages"
VM_HOST_DEPS+=("debootstrap:debootstrap" "sfdisk:fdisk" "python3:python3" "chroot:coreutils")
vm_ensure_deps
vm_step_end

vm_step "kernel"
vm_kernel
vm_step_end

# ---------------------------------------------------------------------------------------------------
# 1. The base root filesystem: debootstrap + the kernel's modules + a static network and console
# setup. Cached by everything that goes into it.
key=$(printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$KVER" "base-v1" | sha256sum | cut -c1-16)
BASE=$VM_CACHE/node-base-$key
if [[ ! -e $BASE/.done ]]; then
  vm_step "debootstrap $SUITE (cached in $BASE)"
  rm -rf "$BASE"
  mkdir -p "$BASE" "$VM_CACHE/debootstrap-debs"
  debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$VM_CACHE/debootstrap-debs" \
    "$SUITE" "$BASE/tree" "$MIRROR" >"$BASE/debootstrap.log" 2>&1 ||
    vm_die "debootstrap failed; see $BASE/debootstrap.log: $(tail -n 3 "$BASE/debootstrap.log" | tr '\n' ' ')"
  T=$BASE/tree
  # The kernel's modules (md, raid0, xfs, ...), with real kmod's depmod: udev and mount load them.
  mkdir -p "$T/lib/modules"
  cp -a "$MODDIR" "$T/lib/modules/"
  chroot "$T" depmod "$KVER"
  echo node >"$T/etc/hostname"
  : >"$T/etc/fstab"
  # The fake IMDS's network: qemu's user network on 169.254.0.0/16, a static address.
  mkdir -p "$T/etc/systemd/network"
  printf '[Match]\nName=en*\n\n[Network]\nAddress=169.254.0.15/16\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
    >"$T/etc/systemd/network/10-vmtest.network"
  chroot "$T" systemctl enable systemd-networkd.service >/dev/null 2>&1
  # A quiet serial console (the scenarios write there) and nothing a test box does not need.
  chroot "$T" systemctl mask serial-getty@ttyS0.service getty@tty1.service e2scrub_reap.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
  # AL2023 starts containerd from nodeadm-run (after cloud-final), not from multi-user.target.
  chroot "$T" systemctl disable containerd.service >/dev/null 2>&1
  passwd -R "$T" -d root >/dev/null
  touch "$BASE/.done"
  vm_step_end
fi

# ---------------------------------------------------------------------------------------------------
# 2. The .deb: the release's when there is one, else the same packaging of the debug binary.
vm_step "nodeprep package"
if [[ -z ${NODEPREP_DEB:-} ]]; then
  cargo build -p nodeprep --locked --quiet
  rm -rf "$OUT/deb"
  mkdir -p "$OUT/deb"
  "$REPO_ROOT/scripts/package" deb "$REPO_ROOT/target/debug/nodeprep" "$OUT/deb" >"$OUT/package.log" 2>&1 ||
    vm_die "scripts/package deb failed: $(tail -n 5 "$OUT/package.log")"
  NODEPREP_DEB=$(ls -1 "$OUT"/deb/nodeprep_*_amd64.deb | head -n1)
fi
[[ -f $NODEPREP_DEB ]] || vm_die "$NODEPREP_DEB: no such .deb"
vm_log "installing $NODEPREP_DEB ($(dpkg-deb --field "$NODEPREP_DEB" Version))"
vm_step_end

# ---------------------------------------------------------------------------------------------------
# 3. The AMI: the base tree, the .deb installed with dpkg, the units enabled as an AMI build does,
# the AMI's config, the stub units, the scenarios; packed into a GPT disk image (ext4 at 1 MiB).
vm_step "AMI root disk"
rm -rf "$OUT/tree" "$OUT/root.img"
mkdir -p "$OUT"
cp -a "$BASE/tree" "$OUT/tree"
T=$OUT/tree
cp "$NODEPREP_DEB" "$T/tmp/nodeprep.deb"
mkdir -p "$T/usr/share/vmtest"
cp "$NODEPREP_DEB" "$T/usr/share/vmtest/nodeprep.deb" # stopstart upgrades to it in the guest
chroot "$T" dpkg -i /tmp/nodeprep.deb >"$OUT/dpkg.log" 2>&1 || vm_die "dpkg -i failed: $(tail -n 5 "$OUT/dpkg.log")"
rm "$T/tmp/nodeprep.deb"
chroot "$T" systemctl enable nodeprep-boot.service nodeprep.service nodeprep-config.path >/dev/null 2>&1
# The AMI's config: the package's, with limits applied on every node (no EFA in this VM).
sed -i '/^\[limits\]/,/^\[/ s/^apply = "auto"/apply = "always"/' "$T/etc/nodeprep/config.toml"
grep -q '^apply = "always"' "$T/etc/nodeprep/config.toml" || vm_die "could not set limits.apply in the AMI's config"
# debootstrap's minbase has no /etc/hosts; containerd copies it into every pod sandbox.
printf '127.0.0.1\tlocalhost\n127.0.1.1\tnode\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$T/etc/hosts"
# Stub units, guest tools, the scenarios.
cp "$NODE"/units/*.service "$T/etc/systemd/system/"
for u in "$NODE"/units/*.service; do
  grep -q '^\[Install\]' "$u" && chroot "$T" systemctl enable "$(basename "$u")" >/dev/null 2>&1
done
install -m755 "$NODE"/bin/* "$T/usr/local/sbin/"
mkdir -p "$T/vmtest" "$T/usr/share/vmtest"
cp "$VM_DIR/guest/lib.sh" "$T/vmtest/lib.sh"
cp "$NODE/lib.sh" "$T/vmtest/node-lib.sh"
cp -r "$NODE/scenarios" "$T/vmtest/scenarios"
# containerd as the EKS AMIs configure it: CRI with a base runtime spec (`ctr oci spec` with EKS's
# NOFILE), the sandbox image pre-pulled (here: built from busybox-static and imported by
# nodeadm-run), no CNI (the canary uses the host network).
chroot "$T" ctr oci spec | python3 -c '
import json, sys
spec = json.load(sys.stdin)
spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 65536, "hard": 1048576}]
json.dump(spec, sys.stdout, indent=2)' >"$T/usr/share/vmtest/base-runtime-spec.json"
cat >"$T/usr/share/vmtest/containerd-config.toml" <<'EOF'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.6"
[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/nonexistent"
conf_dir = "/nonexistent"
[plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
base_runtime_spec = "/etc/containerd/base-runtime-spec.json"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = true
EOF
python3 "$REPO_ROOT/tests/cri/make-image.py" "$T/usr/share/vmtest/pause.tar" registry.k8s.io/pause:3.6
# GPT with one partition; the kernel finds the root by PARTUUID (no initramfs: ext4 and nvme are
# built into the cloud kernel).
truncate -s 3G "$OUT/root.img"
printf 'label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=%s, name=root\n' "$PARTUUID" |
  sfdisk -q "$OUT/root.img"
blocks=$((($(stat -c %s "$OUT/root.img") - 2 * 1048576) / 4096))
mkfs.ext4 -q -F -L root -b 4096 -E offset=1048576 -d "$T" "$OUT/root.img" "$blocks"
rm -rf "$T"
vm_step_end

# ---------------------------------------------------------------------------------------------------
DISKS=$OUT/disks
rm -rf "$DISKS"
mkdir -p "$DISKS"
blank_set() { # blank_set NAME DIGIT...: new blank instance-store images; prints SERIAL:IMAGE lines
  vm_blank_disks "$DISKS/$1" "$STORE_SIZE" "${@:2}"
}
new_root() { # new_root NAME: a new instance's root volume, copy-on-write over the AMI
  qemu-img create -q -f qcow2 -F raw -b "$OUT/root.img" "$DISKS/$1-root.qcow2"
}

# boot SCENARIO ROOT IMDS_DIR STORE_ARGS_FILE [KERNEL WORDS]: one VM run; records PASS/FAIL and seconds.
boot() {
  local s=$1 root=$2 imds=$3 args=$4 words=${5:-} rc=0 t0 map line serial image k=0
  local dev=(-drive "file=$root,if=none,id=root,format=qcow2,cache=unsafe" -device "nvme,serial=$ROOT_SERIAL,drive=root")
  map="$ROOT_SERIAL:root"
  while IFS=: read -r serial image; do
    dev+=(-drive "file=$image,if=none,id=d$k,format=raw,cache=unsafe" -device "nvme,serial=$serial,drive=d$k")
    map+=",$serial:store"
    k=$((k + 1))
  done <"$args"
  vm_step "scenario $s"
  : >"$imds/log"
  t0=$SECONDS
  # -cpu max + random.trust_cpu=on: TCG emulates RDRAND, nothing waits for entropy. No initramfs.
  timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
    -machine q35 -accel "${VM_ACCEL:-tcg}" -cpu max -smp 2 -m 2048 \
    -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
    -kernel "$KROOT/boot/vmlinuz-$KVER" \
    -append "root=PARTUUID=$PARTUUID rootwait rw console=ttyS0 quiet loglevel=4 systemd.show_status=false panic=-1 random.trust_cpu=on mitigations=off vmtest.scenario=$s vmtest.disks=$map $words" \
    -netdev "user,id=n0,restrict=on,net=169.254.0.0/16,host=169.254.0.2,guestfwd=tcp:169.254.169.254:80-cmd:python3 $NODE/imds.py $imds" \
    -device virtio-net-pci,netdev=n0 \
    "${dev[@]}" </dev/null >"$OUT/$s.log" 2>&1 || rc=$?
  sed -i 's/\r$//' "$OUT/$s.log"
  rc=$(vm_judge "$s" "$OUT/$s.log" "$rc" "$TIMEOUT" $((SECONDS - t0)) && echo 0 || echo 1)
  result[$s]=$([[ $rc == 0 ]] && echo PASS || echo FAIL)
  timing[$s]=$(sed -n "s/^VMTEST timing $s: //p" "$OUT/$s.log" | tr '\n' ' ')
  vm_log "fake IMDS: $(wc -l <"$imds/log") requests ($(cut -d' ' -f2 "$imds/log" | sort | uniq -c | awk '{printf "%s %s; ", $1, $2}'))"
  took[$s]=$(vm_step_seconds)
  vm_step_end "${result[$s]} (console: $OUT/$s.log)"
}
imds_dir() { # imds_dir NAME [USERDATA]: the fake IMDS's answers for one instance
  mkdir -p "$DISKS/imds-$1"
  echo "$INSTANCE_TYPE" >"$DISKS/imds-$1/instance-type"
  [[ -z ${2:-} ]] || cp "$2" "$DISKS/imds-$1/user-data"
  echo "$DISKS/imds-$1"
}
host_fail() {
  echo "HOST FAIL $1: $2"
  result[$1]=FAIL
}

for s in "${scenarios[@]}"; do
  case $s in
  fresh)
    new_root a
    blank_set a 1 2 3 4 >"$DISKS/a.args"
    boot fresh "$DISKS/a-root.qcow2" "$(imds_dir a)" "$DISKS/a.args"
    ;;
  reboot) boot reboot "$DISKS/a-root.qcow2" "$DISKS/imds-a" "$DISKS/a.args" ;;
  stopstart)
    blank_set b 5 6 7 8 >"$DISKS/b.args"
    boot stopstart "$DISKS/a-root.qcow2" "$DISKS/imds-a" "$DISKS/b.args"
    ;;
  foreign)
    new_root c
    blank_set c 9 A B C >"$DISKS/c.args"
    img=$DISKS/c/is2.img
    mkdir -p "$DISKS/c/content"
    echo "someone else's data" >"$DISKS/c/content/file"
    mkfs.ext4 -q -F -L scratch -d "$DISKS/c/content" "$img"
    boot foreign "$DISKS/c-root.qcow2" "$(imds_dir c)" "$DISKS/c.args" "vmtest.foreign=$(sed -n 2p "$DISKS/c.args" | cut -d: -f1)"
    e2fsck -fn "$img" >"$OUT/foreign.e2fsck" 2>&1 || host_fail foreign "e2fsck -fn found damage on the foreign disk: $(tail -n 3 "$OUT/foreign.e2fsck" | tr '\n' ' ')"
    [[ $(debugfs -R 'cat /file' "$img" 2>/dev/null) == "someone else's data" ]] || host_fail foreign "the foreign disk's file is gone or changed"
    echo "HOST ok foreign: the foreign ext4 is intact (e2fsck -fn) and its file reads back"
    ;;
  late)
    new_root d
    blank_set d 1 3 5 7 >"$DISKS/d.args"
    boot late "$DISKS/d-root.qcow2" "$(imds_dir d "$NODE/userdata/late.sh")" "$DISKS/d.args"
    ;;
  esac
done

# ---------------------------------------------------------------------------------------------------
echo
echo "full-node VM tests (Debian $SUITE, kernel $KVER, $(basename "$NODEPREP_DEB"), accel ${VM_ACCEL:-tcg}):"
failed=0
for s in "${scenarios[@]}"; do
  printf '  %-10s %-4s %4s s  %s\n' "$s" "${result[$s]}" "${took[$s]}" "${timing[$s]:-}"
  [[ ${result[$s]} == PASS ]] || failed=$((failed + 1))
done
echo "  total $((SECONDS - t_total)) s; $failed of ${#scenarios[@]} scenario(s) failed"
((failed == 0))
