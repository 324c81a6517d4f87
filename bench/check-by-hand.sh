#!/bin/sh
# What a person's script does to check a node by hand: the same reads `nodeprep check` makes, with
# cat and ls, one cat per device (all its files at once) or file, as userData and debug scripts do.
# bench/check.sh times it against nodeprep. Usage: bench/check-by-hand.sh ROOT
R=$1
cat "$R/sys/devices/virtual/dmi/id/sys_vendor" "$R/sys/devices/virtual/dmi/id/product_name" >/dev/null
# limits: containerd's process, its limits, the drop-ins, the base runtime spec
for p in "$R"/proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = containerd ] && cat "$p/limits" >/dev/null
done
cat "$R/etc/containerd/base-runtime-spec.json" >/dev/null 2>&1
ls "$R/etc/systemd/system/containerd.service.d" >/dev/null 2>&1
# efa: every RDMA device, its PCI ids, port state, uverbs
for d in "$R"/sys/class/infiniband/*; do
  cat "$d/device/vendor" "$d/device/device" "$d/device/uevent" "$d/ports/1/state" "$d/ports/1/phys_state" >/dev/null 2>&1
  # Every hardware counter, per device and per port (the efa check's totals since boot).
  cat "$d"/hw_counters/* "$d"/ports/1/hw_counters/* >/dev/null 2>&1
done
# EFA PCI functions attached, and their driver
for f in "$R"/sys/bus/pci/devices/*; do [ -e "$f/driver" ] && cat "$f/driver" >/dev/null 2>&1; done
for u in "$R"/sys/class/infiniband_verbs/uverbs*; do cat "$u/ibdev" >/dev/null; done
ls "$R/dev/infiniband" >/dev/null
# nvidia: PCI functions, device nodes, driver version, kernel log
for f in "$R"/sys/bus/pci/devices/*; do cat "$f/vendor" "$f/device" "$f/class" >/dev/null; done
ls "$R/dev" >/dev/null
cat "$R/proc/driver/nvidia/version" >/dev/null
grep -c 'NVRM: Xid' "$R/dev/kmsg" >/dev/null
# storage: block devices, md arrays, mounts
for b in "$R"/sys/block/*; do cat "$b/size" "$b/dev" >/dev/null; cat "$b/device/model" "$b/device/serial" >/dev/null 2>&1; ls "$b/holders" >/dev/null 2>&1; done
cat "$R"/sys/block/md*/md/array_state "$R"/sys/block/md*/md/raid_disks >/dev/null 2>&1
cat "$R/proc/1/mountinfo" >/dev/null
# device plugins
cat "$R/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint" >/dev/null
