# Host-side helpers shared by build.sh, run.sh and storage.sh. Source it; it defines functions only.
# shellcheck shell=bash

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$VM_DIR/../.." && pwd)
# Downloads (the kernel package) are cached here; target/ is git-ignored.
VM_CACHE=${VM_CACHE:-$REPO_ROOT/target/vm-cache}

# Debian packages the VM harness needs on the host, as "command:package".
VM_HOST_DEPS=(
  "qemu-system-x86_64:qemu-system-x86" # the emulator (TCG: no KVM needed)
  "qemu-img:qemu-utils"                # copy-on-write overlays of the full-node root disk
  "busybox:busybox-static"             # static busybox: the guest's shell and coreutils
  "mdadm:mdadm"                        # copied into the guest
  "mkfs.xfs:xfsprogs"                  # copied into the guest
  "mkfs.ext4:e2fsprogs"                # host: the `foreign` disk; e2fsck/debugfs checks
  "debugfs:e2fsprogs"
  "cpio:cpio"                          # packs the initramfs
  "blkid:util-linux"                   # copied into the guest (with wipefs, lsblk, mount, ...)
  "wipefs:util-linux"
  "mount:mount"
  "ldd:libc-bin"                       # finds the shared libraries to copy
  "strip:binutils"                     # strips debug info off the nodeprep binary
  "apt-get:apt"                        # downloads the kernel package (never installs it)
  "dpkg-deb:dpkg"
  "timeout:coreutils"
  "sha256sum:coreutils"
)

vm_log() { printf '[vm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
vm_die() {
  printf '[vm] error: %s\n' "$*" >&2
  exit 1
}

# Installs what is missing (root + apt-get), else names it and exits 2.
vm_ensure_deps() {
  local pair cmd pkg missing=()
  for pair in "${VM_HOST_DEPS[@]}"; do
    cmd=${pair%%:*} pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 && continue
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    vm_log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "tests/vm: missing ${missing[*]}; install them (Debian: apt-get install --no-install-recommends ${missing[*]})" >&2
    exit 2
  fi
}

kernel_pkg() {
  if [[ -n ${VM_KERNEL_PKG:-} ]]; then
    echo "$VM_KERNEL_PKG"
    return
  fi
  local pkg
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [[ -z $pkg && $(id -u) == 0 ]]; then
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  if [[ -z $pkg ]]; then # offline: the newest kernel already extracted in the cache
    pkg=$(ls -1 "$VM_CACHE/kernel" 2>/dev/null | sort -V | tail -n1)
  fi
  [[ -n $pkg ]] || vm_die "cannot find a Debian kernel package (apt-cache depends linux-image-cloud-amd64 gave nothing; set VM_KERNEL_PKG)"
  echo "$pkg"
}

# The Debian cloud kernel, downloaded once into $VM_CACHE/kernel (`apt-get download` + `dpkg-deb
# -x`: nothing is installed on this machine). Sets KROOT (the extracted package), KVER and MODDIR.
vm_kernel() {
  local PKG deb
  PKG=$(kernel_pkg)
  KROOT=$VM_CACHE/kernel/$PKG
  if [[ ! -e $KROOT/.extracted ]]; then
    mkdir -p "$VM_CACHE/debs"
    deb=$(ls -1 "$VM_CACHE/debs/${PKG}_"*.deb 2>/dev/null | tail -n1 || true)
    if [[ -z $deb ]]; then
      vm_log "downloading $PKG"
      # As root apt warns that the _apt user cannot write here; the download still works.
      (cd "$VM_CACHE/debs" && apt-get download -q "$PKG" 2>&1 | grep -v 'unsandboxed' >&2) || true
      deb=$(ls -1 "$VM_CACHE/debs/${PKG}_"*.deb 2>/dev/null | tail -n1 || true)
      [[ -n $deb ]] || vm_die "apt-get download $PKG failed"
    fi
    vm_log "extracting $(basename "$deb")"
    rm -rf "$KROOT"
    mkdir -p "$KROOT"
    dpkg-deb -x "$deb" "$KROOT"
    KVER=$(ls -1 "$KROOT/lib/modules" | head -n1)
    # The package ships no modules.dep (the installer runs depmod); busybox depmod makes one.
    busybox depmod -b "$KROOT" "$KVER"
    touch "$KROOT/.extracted"
  fi
  KVER=$(ls -1 "$KROOT/lib/modules" | head -n1)
  MODDIR=$KROOT/lib/modules/$KVER
  [[ -f $KROOT/boot/vmlinuz-$KVER && -f $MODDIR/modules.dep ]] || vm_die "$KROOT: incomplete kernel tree; delete it and retry"
}

# vm_judge SCENARIO LOG QEMU_RC TIMEOUT ELAPSED: 0 when the console shows `VMTEST PASS SCENARIO` and
# no `VMTEST FAIL`; else prints the FAIL lines (or the console's tail) and returns 1.
vm_judge() {
  local scenario=$1 log=$2 rc=$3 timeout_s=$4 elapsed=$5
  if ((rc == 124 || rc == 137)); then
    echo "vm: $scenario: VM timed out after $timeout_s s; console tail ($log):" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    return 1
  fi
  if ! grep -q "^VMTEST END $scenario\$" "$log"; then
    echo "vm: $scenario: VM stopped (qemu exit $rc) without finishing the scenario; console tail ($log):" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    return 1
  fi
  if grep -q '^VMTEST FAIL ' "$log" || ! grep -q "^VMTEST PASS $scenario\$" "$log"; then
    echo "vm: $scenario: FAILED in $elapsed s ($log):" >&2
    grep -E '^VMTEST (FAIL|RESULT) ' "$log" | sed 's/^/  | /' >&2
    return 1
  fi
  vm_log "$scenario: VMTEST PASS in $elapsed s"
}

# vm_blank_disks DIR SIZE DIGIT...: new blank instance-store images DIR/is1.img ... (sparse zeros:
# what a new EC2 instance-store disk reads as), one per DIGIT; prints SERIAL:IMAGE per disk. The
# serial is AWS + 16 times the digit: 19 characters, like EC2 instance-store serials (AWS + hex).
vm_blank_disks() {
  local dir=$1 size=$2 i=1 digit
  shift 2
  rm -rf "$dir"
  mkdir -p "$dir"
  for digit in "$@"; do
    truncate -s "$size" "$dir/is$i.img"
    printf 'AWS%s:%s\n' "$(printf "%016d" 0 | tr 0 "$digit")" "$dir/is$i.img"
    i=$((i + 1))
  done
}

# Step timing: `vm_step NAME` starts a step, `vm_step_end` prints its elapsed seconds.
_vm_step_name='' _vm_step_t0=0
vm_step() {
  _vm_step_name=$1 _vm_step_t0=$SECONDS
  vm_log "== $1"
}
vm_step_seconds() { echo $((SECONDS - _vm_step_t0)); }
vm_step_end() { vm_log "== $_vm_step_name: ${1:-done} in $(vm_step_seconds) s"; }
