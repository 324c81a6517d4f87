#!/usr/bin/env bash
# Time from a fatal XID appended to the kernel log to `/readyz` answering 503, with `serve` following
# the kernel log (the default) against the interval polling nodeprep did before (follow_kernel_log =
# false), both at serve's default interval of 30 s, on a p5.48xlarge tree, in the same run.
#
#   bench/kmsg.sh                    # TRIALS=10 following, BASELINE_TRIALS=3 polling
#   TRIALS=5 BASELINE_TRIALS=1 bench/kmsg.sh
#
# Each trial starts serve afresh, waits for /readyz 200 and half a second more, appends the line
# at a random point of the interval, and polls /readyz every 5 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-10}
BASELINE_TRIALS=${BASELINE_TRIALS:-3}
source bench/binary.sh
work=$(mktemp -d)
cleanup() { kill "${pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
NODEPREP_NVML_LIB=$(target/release/nodeprep-fixtures fake-nvml)
export NODEPREP_NVML_LIB

trial() { # follow(true|false) -> milliseconds on stdout
  rm -rf "$work/root"
  target/release/nodeprep-fixtures p5.48xlarge "$work/root"
  mkdir -p "$work/root/etc/nodeprep"
  printf '[serve]\ninterval_seconds = 30\nfollow_kernel_log = %s\n' "$1" > "$work/root/etc/nodeprep/config.toml"
  "$B" --root "$work/root" serve --listen 127.0.0.1:0 > "$work/serve.out" 2>/dev/null &
  pid=$!
  python3 - "$work" <<'PY'
import os, random, sys, time, urllib.request, urllib.error
work = sys.argv[1]
addr = None
t0 = time.time()
while addr is None and time.time() - t0 < 20:
    try:
        line = open(f"{work}/serve.out").readline().strip()
        if line.startswith("nodeprep serve: listening on "):
            addr = line.split("listening on ")[1]
    except FileNotFoundError:
        pass
    time.sleep(0.01)
def status():
    try:
        return urllib.request.urlopen(f"{addr}/readyz", timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0
while status() != 200:
    time.sleep(0.02)
time.sleep(0.5 + random.random() * 2)
with open(f"{work}/root/dev/kmsg", "a") as f:
    f.write("3,9000,99000000,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.\n")
t = time.monotonic()
while status() != 503:
    if time.monotonic() - t > 60:
        print("bench: /readyz never said 503", file=sys.stderr); sys.exit(1)
    time.sleep(0.005)
print(round((time.monotonic() - t) * 1000, 1))
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

follow=() base=()
for _ in $(seq "$TRIALS"); do follow+=("$(trial true)"); done
for _ in $(seq "$BASELINE_TRIALS"); do base+=("$(trial false)"); done
python3 - "${#follow[@]}" "${follow[@]}" "${base[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1]); f = [float(x) for x in sys.argv[2:2+n]]; b = [float(x) for x in sys.argv[2+n:]]
fm, bm = statistics.median(f), statistics.median(b)
print(f"== fatal XID appended to the kernel log -> /readyz 503 (serve, interval 30 s, p5.48xlarge tree, {len(f)}+{len(b)} trials)")
print(f"following the kernel log: median {fm:.0f} ms (min {min(f):.0f}, max {max(f):.0f}); target < 1000 ms: {'ok' if max(f) < 1000 else 'MISSED'}")
print(f"interval polling (follow_kernel_log = false): median {bm:.0f} ms (min {min(b):.0f}, max {max(b):.0f})")
print(f"ratio polling/following: {bm / fm:.0f}x")
PY
