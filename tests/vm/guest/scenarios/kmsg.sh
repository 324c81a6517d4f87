#!/bin/sh
# `nodeprep serve` follows the live kernel log: a p5.48xlarge fixture tree (GPUs through the fake
# NVML) whose dev/kmsg is this guest's own /dev/kmsg, a character device. An XID written to /dev/kmsg
# (as the NVIDIA driver logs it) must turn /readyz to 503 within a second, long before the check
# interval (30 s); before it, /readyz is 200.
. /vmtest/lib.sh

R=/vmtest/extra/p5
check "the fixture tree and the fake NVML are in the guest" [ -d "$R/sys" -a -f /vmtest/extra/libnvidia-ml.so.1 ]
rm -f "$R/dev/kmsg"
: >"$R/dev/kmsg"
mount --bind /dev/kmsg "$R/dev/kmsg"
check "the tree's dev/kmsg is the live character device" [ -c "$R/dev/kmsg" ]
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
NODEPREP_LOG=info NODEPREP_NVML_LIB=/vmtest/extra/libnvidia-ml.so.1 nodeprep --root "$R" serve --listen 127.0.0.1:9477 >/tmp/serve.out 2>/tmp/serve.err &
pid=$!
# The status line of GET /readyz (busybox's static wget crashes resolving; nc needs no resolver).
# nc stops reading the answer when its input ends: keep the input open 0.3 s, longer than serve
# takes to answer from memory (the answer's own end closes the connection).
status() { (printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n'; usleep 300000) | nc 127.0.0.1 9477 2>/dev/null | head -n 1; }
readyz() { status | grep -q ' 200 '; }
unready() { status | grep -q ' 503 '; }
i=0
# The first run is slow under TCG with a debug build: up to 3 minutes.
until readyz; do
  i=$((i + 1))
  [ $i -le 1800 ] || break
  usleep 100000
done
info "first /readyz 200 after $((i / 10)) s"
check "/readyz is 200 before the XID (the tree is a healthy p5)" readyz
if ! readyz; then
  finish
  exit 0
fi
usleep 500000
t0=$(cut -d' ' -f1 /proc/uptime)
echo '<3>NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.' >/dev/kmsg
i=0
while readyz; do
  i=$((i + 1))
  [ $i -le 100 ] || break
done
t1=$(cut -d' ' -f1 /proc/uptime)
ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%d", (b - a) * 1000}')
info "XID written to /dev/kmsg -> /readyz not 200 after ${ms} ms (polled every 0.3 s; interval 30 s)"
check "/readyz turns 503 after the XID" unready
check "serve still runs (503 is its answer, not a dead server)" kill -0 "$pid"
check "within 3 s of the write, not at the 30 s interval (took ${ms} ms)" [ "$ms" -lt 3000 ]
check "serve says why: the kernel log reran the checks" grep -q 'check run started by the kernel log' /tmp/serve.err
kill "$pid"
sed 's/^/  [serve stderr] /' /tmp/serve.err | head -n 40
umount "$R/dev/kmsg"
finish
