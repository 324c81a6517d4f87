#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30) and fails if any of them finds an input
# that crashes it (a panic, an overflow, a hang past 10 s, or running out of memory).
#
#   fuzz/run.sh 30          # every target, 30 s each
#   fuzz/run.sh 60 config   # one target
#
# Works on a stable toolchain: cargo-fuzz passes -Z flags, which RUSTC_BOOTSTRAP=1 allows. Built
# without a sanitizer (the parsers are safe Rust: panics, overflow checks and debug assertions are
# what finds bugs) in release mode with debug assertions. Inputs: corpus/<target> (kept between
# runs, not committed), seeds/<target> and regressions/<target> (committed), dicts/<target>.dict.
# A crash leaves its input in artifacts/<target>/: fix the parser, then copy the input to
# regressions/<target>/ so that `cargo test` replays it (agent/tests/fuzz_props.rs).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --debug-assertions)
cargo fuzz build "${flags[@]}"
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi

failed=()
printf '%-16s %10s %10s %s\n' target runs exec/s result
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" logs
  dirs=("corpus/$t")
  for d in "seeds/$t" "regressions/$t"; do
    [[ -d $d ]] && dirs+=("$d")
  done
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [[ -f dicts/$t.dict ]] && args+=(-dict="dicts/$t.dict")
  log=logs/$t.log
  if cargo fuzz run "${flags[@]}" "$t" "${dirs[@]}" -- "${args[@]}" >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    failed+=("$t")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
  rate=$([[ -n $runs && -n $secs && $secs -gt 0 ]] && echo $((runs / secs)) || echo -)
  printf '%-16s %10s %10s %s\n' "$t" "${runs:--}" "$rate" "$result"
  if [[ $result == CRASH ]]; then
    grep -E 'panicked|Test unit written|ERROR: libFuzzer|SUMMARY' "$log" | head -n 20 >&2 || true
    echo "fuzz/run.sh: $t crashed; full log in fuzz/$log" >&2
  fi
done

if ((${#failed[@]})); then
  echo "fuzz/run.sh: crashes in: ${failed[*]} (inputs under fuzz/artifacts/<target>/)" >&2
  exit 1
fi
