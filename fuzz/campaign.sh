#!/usr/bin/env bash
# A long fuzzing campaign: every target at once, at the lowest CPU priority, each for
# CAMPAIGN_SECONDS of wall time on a copy of its corpus (grown from earlier campaigns, kept in
# $FUZZ_BUILD/campaign-corpus). Prints per target: executions, CPU minutes used, findings.
# Usage: fuzz/campaign.sh [TARGET...]   (CAMPAIGN_SECONDS default 3600; build: fuzz/run.sh's)
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${CAMPAIGN_SECONDS:-3600}"
build="${FUZZ_BUILD:-build-fuzz}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(fuzz_idx fuzz_model fuzz_checkpoint fuzz_image fuzz_predict_json)
declare -A max_len=([fuzz_idx]=16384 [fuzz_model]=16384 [fuzz_checkpoint]=16384
                    [fuzz_image]=16384 [fuzz_predict_json]=8192)
declare -A dict=([fuzz_model]=fuzz/json.dict [fuzz_checkpoint]=fuzz/json.dict
                 [fuzz_predict_json]=fuzz/json.dict)

cmake --preset fuzz >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}"

pids=()
for t in "${targets[@]}"; do
  corpus="$build/campaign-corpus/$t"
  findings="$build/campaign-findings/$t"
  mkdir -p "$corpus" "$findings" "$build/campaign-logs"
  cp -n fuzz/corpus/"$t"/* "$corpus"/
  options=(-rss_limit_mb=2560 -timeout=30 -artifact_prefix="$findings/" -print_final_stats=1
           -max_len="${max_len[$t]}" -max_total_time="$seconds")
  [ -z "${dict[$t]:-}" ] || options+=(-dict="${dict[$t]}")
  # bash's time: the CPU seconds of the fuzzer itself (user, system).
  { TIMEFORMAT="cpu_seconds %U %S"
    time nice -n 19 "$build/fuzz/$t" "${options[@]}" "$corpus" >"$build/campaign-logs/$t.log" 2>&1
  } 2>"$build/campaign-logs/$t.time" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done

echo "== fuzz campaign ($seconds s of wall time per target, all at once)"
for t in "${targets[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$build/campaign-logs/$t.log" | tail -1 |
         grep -o '[0-9]*$' || echo 0)
  cpu=$(awk '/cpu_seconds/ {printf "%.1f", ($2 + $3) / 60}' "$build/campaign-logs/$t.time")
  found=$(find "$build/campaign-findings/$t" -type f | wc -l)
  echo "$t: $runs runs, $cpu CPU-minutes, $found findings, corpus $(ls "$build/campaign-corpus/$t" | wc -l) inputs"
done
exit "$status"
