# Host-side helpers shared by build.sh, run.sh and storage.sh. Source it; it defines functions only.
# shellcheck shell=bash

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$VM_DIR/../.." && pwd)
# Downloads (the kernel package) are cached here; target/ is git-ignored.
VM_CACHE=${VM_CACHE:-$REPO_ROOT/target/vm-cache}

# Debian packages the VM harness needs on the host, as "command:package".
VM_HOST_DEPS=(
  "qemu-system-x86_64:qemu-system-x86" # the emulator (TCG: no KVM needed)
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

# Step timing: `vm_step NAME` starts a step, `vm_step_end` prints its elapsed seconds.
_vm_step_name='' _vm_step_t0=0
vm_step() {
  _vm_step_name=$1 _vm_step_t0=$SECONDS
  vm_log "== $1"
}
vm_step_seconds() { echo $((SECONDS - _vm_step_t0)); }
vm_step_end() { vm_log "== $_vm_step_name: ${1:-done} in $(vm_step_seconds) s"; }
