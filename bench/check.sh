#!/usr/bin/env bash
# `nodeprep check` on a p5.48xlarge host tree (32 EFA, 8 GPUs through the fake NVML, 8 disks in a
# RAID0), a whole process with start-up, against bench/check-by-hand.sh doing the same reads with cat
# and ls, timed by hyperfine in the same run.
#
#   bench/check.sh               # RUNS=200 by default; installs hyperfine (Debian, as root) if missing
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-200}
command -v hyperfine >/dev/null || {
  [[ $(id -u) == 0 ]] || { echo "bench: install hyperfine" >&2; exit 2; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
}
B=${NODEPREP_BIN:-target/release/nodeprep}
[[ -x $B ]] || cargo build --release -q -p nodeprep
[[ -x target/release/nodeprep-fixtures ]] || cargo build --release -q -p nodeprep-fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/nodeprep-fixtures p5.48xlarge "$work/root"
NODEPREP_NVML_LIB=$(target/release/nodeprep-fixtures fake-nvml)
export NODEPREP_NVML_LIB
"$B" --root "$work/root" check > "$work/report.txt" || { cat "$work/report.txt"; echo "bench: the tree is not ready" >&2; exit 1; }
hyperfine -N -i --warmup 20 --runs "$RUNS" --export-json "$work/h.json" \
  -n nodeprep "$B --root $work/root check" \
  -n by-hand "sh bench/check-by-hand.sh $work/root" > "$work/hyperfine.txt"
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
np, sh = r["nodeprep"], r["by-hand"]
ok = lambda b: "ok" if b else "MISSED"
med = lambda x: x["median"] * 1000
print(f"== nodeprep check on a p5.48xlarge tree vs the same reads by cat/ls (hyperfine, {len(np['times'])} runs each)")
print(f"nodeprep check: median {med(np):.2f} ms (mean {np['mean']*1000:.2f} ± {np['stddev']*1000:.2f}); target < 5 ms: {ok(med(np) < 5)}")
print(f"by hand:        median {med(sh):.2f} ms (mean {sh['mean']*1000:.2f} ± {sh['stddev']*1000:.2f})")
print(f"ratio by-hand/nodeprep: {med(sh)/med(np):.1f}x (target >= 50x: {ok(med(sh)/med(np) >= 50)})")
PY
