#!/usr/bin/env bash
# Builds a bootable Debian kernel and a busybox initramfs for the storage VM tests.
#
#   tests/vm/build.sh OUTDIR NODEPREP_BIN
#
# Writes OUTDIR/vmlinuz, OUTDIR/initramfs.cpio (uncompressed newc cpio: unpacking gzip under TCG costs
# seconds) and OUTDIR/kernel-version. The kernel package is downloaded once into target/vm-cache
# (`apt-get download` + `dpkg-deb -x`: nothing is installed on this machine). The initramfs is
# reassembled on every call (a second or two) so that it always carries the given nodeprep binary and
# the current guest scripts.
#
# Environment:
#   VM_KERNEL_PKG    Debian kernel package to use (default: what linux-image-cloud-amd64 depends on,
#                    falling back to the newest one already in the cache when apt cannot answer)
#   VM_EXTRA_TOOLS   more host commands to copy into the guest (with their libraries), space-separated
#   VM_EXTRA_DIR     a directory copied to the guest's /vmtest/extra
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

(($# == 2)) || vm_die "usage: $0 OUTDIR NODEPREP_BIN"
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
NODEPREP_BIN=$2
[[ -x $NODEPREP_BIN ]] || vm_die "$NODEPREP_BIN: not an executable (cargo build -p nodeprep)"

# Modules the tests need, in load order; dependencies found in modules.dep are loaded before each.
# crc32c_generic must come before libcrc32c/xfs: libcrc32c asks the crypto API for "crc32c", and with
# no modprobe/udev in the guest nothing would load it on demand. Built-in ones are skipped.
VM_MODULES=(crc32c_generic nvme_core nvme md_mod raid0 libcrc32c xfs)

# Host commands copied into the guest, each with the shared libraries `ldd` lists. Everything else
# comes from busybox. Real util-linux mount/blkid/wipefs/lsblk stand in for what a node has.
read -ra extra_tools <<<"${VM_EXTRA_TOOLS:-}"
VM_TOOLS=(mdadm mkfs.xfs blkid wipefs lsblk findmnt mount umount mountpoint "${extra_tools[@]}")

# ---------------------------------------------------------------------------------------------------
# 1. The kernel: download (cached) and extract the Debian package, then generate modules.dep.
# ---------------------------------------------------------------------------------------------------
vm_kernel # sets KROOT, KVER and MODDIR (lib.sh)

# ---------------------------------------------------------------------------------------------------
# 2. Resolve the module list against modules.builtin / modules.dep into load order.
# ---------------------------------------------------------------------------------------------------
norm() { # kernel/drivers/md/md-mod.ko[.xz] -> md_mod
  local b=${1##*/}
  b=${b%%.ko*}
  echo "${b//-/_}"
}
declare -A dep_of=() path_of=() builtin=() seen=()
while IFS=: read -r mod deps; do
  n=$(norm "$mod")
  path_of[$n]=$mod
  dep_of[$n]=$deps
done <"$MODDIR/modules.dep"
while read -r mod; do builtin[$(norm "$mod")]=1; done <"$MODDIR/modules.builtin"

load_order=()
resolve() {
  local n=$1 d
  [[ -n ${seen[$n]:-} ]] && return
  seen[$n]=1
  if [[ -n ${builtin[$n]:-} ]]; then
    vm_log "module $n: built into $KVER"
    return
  fi
  [[ -n ${path_of[$n]:-} ]] || vm_die "module $n: not in $MODDIR (neither built in nor a module)"
  for d in ${dep_of[$n]}; do resolve "$(norm "$d")"; done
  load_order+=("${path_of[$n]}")
}
for m in "${VM_MODULES[@]}"; do resolve "$m"; done

# ---------------------------------------------------------------------------------------------------
# 3. Assemble the initramfs tree: merged-/usr layout like Debian and AL2023.
# ---------------------------------------------------------------------------------------------------
ROOT=$OUT/root
rm -rf "$ROOT"
mkdir -p "$ROOT"/usr/{bin,sbin,lib/x86_64-linux-gnu,lib64} "$ROOT"/{dev,proc,sys,run,tmp,mnt,root,etc,var/lib,var/log}
ln -s usr/bin "$ROOT/bin"
ln -s usr/sbin "$ROOT/sbin"
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib64 "$ROOT/lib64"
chmod 1777 "$ROOT/tmp"

# Copies a dynamically linked file and every library `ldd` lists (and the loader) to the same paths.
copy_libs() {
  local lib
  for lib in $(ldd "$1" 2>/dev/null | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}'); do
    [[ -e $ROOT$lib ]] && continue
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
  done
}

# busybox first, with a link for each applet; real tools copied afterwards replace those links.
BUSYBOX=$(command -v busybox)
ldd "$BUSYBOX" >/dev/null 2>&1 && vm_die "$BUSYBOX is dynamically linked; install busybox-static"
cp "$BUSYBOX" "$ROOT/usr/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$ROOT/usr/bin/$applet"
done

for tool in "${VM_TOOLS[@]}"; do
  src=$(command -v "$tool") || vm_die "$tool not found on this machine"
  src=$(readlink -f "$src")
  dst=/usr/${src#/usr/} # /sbin/mdadm and /usr/sbin/mdadm both land in /usr/sbin
  rm -f "$ROOT/usr/bin/$tool" "$ROOT/usr/sbin/$tool"
  cp "$src" "$ROOT$dst"
  [[ ${src##*/} == "$tool" ]] || ln -sf "${src##*/}" "$ROOT$(dirname "$dst")/$tool"
  copy_libs "$src"
done

# nodeprep: without debug info (the debug build is ~180 MB; symbols stay, for backtraces).
strip --strip-debug -o "$ROOT/usr/bin/nodeprep" "$NODEPREP_BIN"
copy_libs "$NODEPREP_BIN"

# Kernel modules, and their load order for /init.
mkdir -p "$ROOT/etc/vmtest"
: >"$ROOT/etc/vmtest/modules"
for m in "${load_order[@]}"; do
  mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$m")"
  case $m in
  *.ko) cp "$MODDIR/$m" "$ROOT/lib/modules/$KVER/$m" ;;
  *.ko.xz) xz -dc "$MODDIR/$m" >"$ROOT/lib/modules/$KVER/${m%.xz}" ;;
  *.ko.zst) zstd -qdc "$MODDIR/$m" >"$ROOT/lib/modules/$KVER/${m%.zst}" ;;
  *) vm_die "$m: unknown module compression" ;;
  esac
  echo "/lib/modules/$KVER/${m%.ko*}.ko" >>"$ROOT/etc/vmtest/modules"
done

# /init, the guest test library, scenarios and a minimal /etc (the guest/etc tree is copied as is).
cp "$VM_DIR/guest/init" "$ROOT/init"
mkdir -p "$ROOT/vmtest"
cp "$VM_DIR/guest/lib.sh" "$ROOT/vmtest/lib.sh"
cp -r "$VM_DIR/guest/scenarios" "$ROOT/vmtest/scenarios"
cp -r "$VM_DIR/guest/etc/." "$ROOT/etc/"
chmod 755 "$ROOT/init" "$ROOT"/vmtest/scenarios/*.sh
# Files a scenario needs beyond the tools (the kmsg scenario: a fixture host tree and the fake NVML).
if [[ -n ${VM_EXTRA_DIR:-} ]]; then
  mkdir -p "$ROOT/vmtest/extra"
  cp -a "$VM_EXTRA_DIR/." "$ROOT/vmtest/extra/"
fi

# ---------------------------------------------------------------------------------------------------
# 4. Pack.
# ---------------------------------------------------------------------------------------------------
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$OUT/initramfs.cpio.tmp"
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
cp "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
echo "$KVER" >"$OUT/kernel-version"
vm_log "built $OUT (kernel $KVER, modules: ${load_order[*]##*/}, initramfs $(du -m "$OUT/initramfs.cpio" | cut -f1) MiB)"
