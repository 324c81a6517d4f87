#!/usr/bin/env bash
# `nodeprep lint` on 1,000 documents (a NodePool, its EC2NodeClass, 998 pods that target it), a
# whole process with start-up, against only parsing the same stream with PyYAML (Debian's
# python3-yaml, libyaml's C loader when present), timed by hyperfine in the same run. Target: < 100 ms.
#
#   bench/lint.sh     # RUNS=60 by default; installs hyperfine and python3-yaml (Debian, as root) if missing
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-60}
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || { echo "bench: install ${need[*]}" >&2; exit 2; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
source bench/binary.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work/stream.yaml" <<'PY'
import sys
pool = open("tests/lint/walkthrough/efa-nodepool.yaml").read()
pod = """---
apiVersion: v1
kind: Pod
metadata: {name: train-%d}
spec:
  nodeSelector: {karpenter.sh/nodepool: gpu-efa}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists}
    - {key: vpc.amazonaws.com, operator: Exists}
  containers:
    - name: c
      image: x
      resources: {limits: {nvidia.com/gpu: 8, vpc.amazonaws.com/efa: 32}}
"""
with open(sys.argv[1], "w") as f:
    f.write(pool)
    for i in range(998):
        f.write(pod % i)
PY
docs=$(grep -c '^kind:' "$work/stream.yaml")
"$B" lint "$work/stream.yaml" > "$work/out.txt" || true
tail -n 1 "$work/out.txt"
loader=$(/usr/bin/python3 -c 'import yaml; print("CSafeLoader" if hasattr(yaml, "CSafeLoader") else "SafeLoader")')
hyperfine -N -i --warmup 3 --runs "$RUNS" --export-json "$work/h.json" \
  -n nodeprep "$B lint $work/stream.yaml" \
  -n pyyaml "/usr/bin/python3 -c 'import sys, yaml; list(yaml.load_all(open(sys.argv[1]), Loader=yaml.$loader))' $work/stream.yaml" > /dev/null
/usr/bin/python3 - "$work/h.json" "$docs" "$loader" <<'PY'
import json, statistics, sys
r = {x["command"]: [t * 1000 for t in x["times"]] for x in json.load(open(sys.argv[1]))["results"]}
np, py = statistics.median(r["nodeprep"]), statistics.median(r["pyyaml"])
ok = lambda b: "ok" if b else "MISSED"
print(f"== nodeprep lint on {sys.argv[2]} documents vs parsing them alone with PyYAML ({sys.argv[3]}), hyperfine {len(r['nodeprep'])} runs each")
print(f"nodeprep lint: median {np:.1f} ms; target < 100 ms: {ok(np < 100)}")
print(f"PyYAML parse:  median {py:.1f} ms")
print(f"ratio pyyaml/nodeprep: {py / np:.1f}x")
PY
