#!/usr/bin/env bash
# /readyz throughput and p99 latency of `nodeprep serve` while its checks run (interval 1 s), next to
# nginx answering a constant 200 on the same machine with the same wrk settings in the same run, plus
# nodeprep's idle RSS and stripped binary size. Prints ratios against nginx.
#
#   bench/readyz.sh            # installs wrk and nginx-light (Debian, as root) if missing
#   DURATION=10 CONNECTIONS=32 ROUNDS=5 bench/readyz.sh
#
# Each round runs wrk against nodeprep and then nginx; the figures are the medians over ROUNDS
# (single short runs on a small machine vary by 2x at p99).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || { echo "bench: install ${need[*]}" >&2; exit 2; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

source bench/binary.sh
work=$(mktemp -d)
cleanup() { kill "${np_pid:-}" "${ng_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A healthy p5.48xlarge host tree; checks rerun every second during the load.
target/release/nodeprep-fixtures p5.48xlarge "$work/root"
mkdir -p "$work/root/etc/nodeprep"
printf '[serve]\ninterval_seconds = %s\n' "${INTERVAL:-1}" > "$work/root/etc/nodeprep/config.toml"

# The tree has no NVIDIA driver: its 8 GPUs are answered by the test suite's fake NVML.
NODEPREP_NVML_LIB=$(target/release/nodeprep-fixtures fake-nvml) "$B" --root "$work/root" serve --listen 127.0.0.1:0 > "$work/np.out" 2> "$work/np.err" &
np_pid=$!
for _ in $(seq 100); do grep -q listening "$work/np.out" 2>/dev/null && break; sleep 0.05; done
np_addr=$(sed -n 's/.*listening on http:\/\///p' "$work/np.out")
for i in $(seq 100); do curl -fs "http://$np_addr/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://$np_addr/readyz" >/dev/null || { echo "bench: nodeprep is not ready on the bench tree:" >&2; curl -s "http://$np_addr/readyz" >&2; exit 1; }

# nginx: one worker (nodeprep serves from one thread), constant 200 from memory.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$port; location /readyz { default_type text/plain; return 200 "ready\n"; } }
}
CONF
"$NGINX" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
ng_pid=$!
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done

rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$np_pid/status)

run() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$1"; }
to_ms() { python3 -c 'import sys,re; v=sys.argv[1]; m=re.match(r"([\d.]+)(us|ms|s)",v); x=float(m.group(1)); print(x/1000 if m.group(2)=="us" else x*1000 if m.group(2)=="s" else x)' "$1"; }
np_rps_all=(); ng_rps_all=(); np_p99_all=(); ng_p99_all=(); np_err=""
for _ in $(seq "$ROUNDS"); do
  np=$(run "http://$np_addr/readyz")
  ng=$(run "http://127.0.0.1:$port/readyz")
  np_rps_all+=("$(awk '/Requests\/sec/ {print $2}' <<<"$np")"); ng_rps_all+=("$(awk '/Requests\/sec/ {print $2}' <<<"$ng")")
  np_p99_all+=("$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$np")")"); ng_p99_all+=("$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$ng")")")
  np_err+=$(grep -E "Non-2xx|Socket errors" <<<"$np" || true)
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
np_rps=$(median "${np_rps_all[@]}"); ng_rps=$(median "${ng_rps_all[@]}")
np_p99=$(median "${np_p99_all[@]}"); ng_p99=$(median "${ng_p99_all[@]}")
rss_load=$(awk '/VmRSS/ {print $2}' /proc/$np_pid/status)
runs=$(curl -fs "http://$np_addr/metrics" | awk '/^nodeprep_check_runs_total/ {print $2}')
cp "$B" "$work/stripped" && strip "$work/stripped"
size=$(stat -c %s "$work/stripped")

echo "== /readyz, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, median of $ROUNDS interleaved rounds; checks rerun every ${INTERVAL:-1} s ($runs runs during the bench)"
echo "nodeprep p99 ms per round: ${np_p99_all[*]}; nginx: ${ng_p99_all[*]}"
printf '%-10s %12s %10s\n' server req/s p99_ms
printf '%-10s %12s %10s\n' nodeprep "$np_rps" "$np_p99" nginx "$ng_rps" "$ng_p99"
python3 - "$np_rps" "$ng_rps" "$np_p99" "$ng_p99" "$rss_idle" "$rss_load" "$size" <<'PY'
import sys
np_rps, ng_rps, np_p99, ng_p99 = map(float, sys.argv[1:5]); idle, load, size = map(int, sys.argv[5:8])
ok = lambda b: "ok" if b else "MISSED"
print(f"throughput ratio nodeprep/nginx: {np_rps/ng_rps:.2f} (target >= 0.80: {ok(np_rps/ng_rps >= 0.8)})")
print(f"p99 ratio nodeprep/nginx:        {np_p99/ng_p99:.2f} (target <= 1.50: {ok(np_p99/ng_p99 <= 1.5)})")
print(f"idle RSS: {idle/1024:.1f} MiB (target < 10 MiB: {ok(idle < 10*1024)}); under load: {load/1024:.1f} MiB")
print(f"stripped binary: {size/1e6:.1f} MB")
PY
[[ -z "$np_err" ]] || echo "nodeprep errors under load: $np_err"
