#!/usr/bin/env bash
# `nodeprep check` on a p5.48xlarge host tree (32 EFA, 8 GPUs through the fake NVML, 8 disks in a
# RAID0), a whole process with start-up, against bench/check-by-hand.sh doing the same reads with cat
# and ls, timed by hyperfine in the same run.
#
#   bench/check.sh    # RUNS=200 (in ROUNDS=4) by default; installs hyperfine (Debian, as root) if missing
#   NODEPREP_BASELINE_BIN=/path/to/older/nodeprep bench/check.sh
#                     # also times an older build in the same rounds, and compares the two ratios
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-200}
command -v hyperfine >/dev/null || {
  [[ $(id -u) == 0 ]] || { echo "bench: install hyperfine" >&2; exit 2; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
}
source bench/binary.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/nodeprep-fixtures p5.48xlarge "$work/root"
NODEPREP_NVML_LIB=$(target/release/nodeprep-fixtures fake-nvml)
export NODEPREP_NVML_LIB
"$B" --root "$work/root" check > "$work/report.txt" || { cat "$work/report.txt"; echo "bench: the tree is not ready" >&2; exit 1; }
baseline=()
if [[ -n ${NODEPREP_BASELINE_BIN:-} ]]; then
  "$NODEPREP_BASELINE_BIN" --root "$work/root" check > /dev/null || { echo "bench: the baseline build finds the tree not ready" >&2; exit 1; }
  baseline=(-n baseline "$NODEPREP_BASELINE_BIN --root $work/root check")
fi
# In ROUNDS alternating rounds, so a machine that speeds up or slows down meanwhile (a shared VM)
# weighs on both sides alike; the times of all rounds are pooled.
ROUNDS=${ROUNDS:-4}
per=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for r in $(seq "$ROUNDS"); do
  hyperfine -N -i --warmup 10 --runs "$per" --export-json "$work/h$r.json" \
    -n nodeprep "$B --root $work/root check" \
    -n by-hand "sh bench/check-by-hand.sh $work/root" "${baseline[@]}" > "$work/hyperfine.txt"
done
python3 - "$B" "$work"/h*.json <<'PY'
import json, statistics, subprocess, sys
times = {"nodeprep": [], "by-hand": [], "baseline": []}
for f in sys.argv[2:]:
    for x in json.load(open(f))["results"]:
        times[x["command"]] += [t * 1000 for t in x["times"]]
np, sh = times["nodeprep"], times["by-hand"]
ok = lambda b: "ok" if b else "MISSED"
med = statistics.median
kind = subprocess.run(["readelf", "-h", sys.argv[1]], capture_output=True, text=True).stdout
kind = next((l.split(":", 1)[1].split()[0] for l in kind.splitlines() if l.strip().startswith("Type:")), "?")
print(f"== nodeprep check on a p5.48xlarge tree vs the same reads by cat/ls (hyperfine, {len(np)} runs each in {len(sys.argv) - 2} rounds; {sys.argv[1]}, {kind})")
print(f"nodeprep check: median {med(np):.2f} ms (p10 {sorted(np)[len(np) // 10]:.2f}, p90 {sorted(np)[9 * len(np) // 10]:.2f}); target < 5 ms: {ok(med(np) < 5)}")
print(f"by hand:        median {med(sh):.2f} ms (p10 {sorted(sh)[len(sh) // 10]:.2f}, p90 {sorted(sh)[9 * len(sh) // 10]:.2f})")
print(f"ratio by-hand/nodeprep: {med(sh) / med(np):.1f}x (target >= 50x: {ok(med(sh) / med(np) >= 50)})")
bl = times["baseline"]
if bl:
    r_now, r_base = med(sh) / med(np), med(sh) / med(bl)
    change = (r_now - r_base) / r_base * 100
    print(f"baseline:       median {med(bl):.2f} ms (p10 {sorted(bl)[len(bl) // 10]:.2f}, p90 {sorted(bl)[9 * len(bl) // 10]:.2f}); ratio by-hand/baseline {r_base:.1f}x")
    print(f"ratio now vs baseline: {r_now:.1f}x vs {r_base:.1f}x ({change:+.1f} %; within 10 %: {ok(abs(change) <= 10 or change > 0)})")
PY
