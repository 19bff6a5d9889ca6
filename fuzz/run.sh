#!/usr/bin/env bash
# Builds the libFuzzer targets (cmake --preset fuzz) and runs each one on a copy of its seed
# corpus. Usage: fuzz/run.sh [TARGET...]   (default: every target)
#   FUZZ_SECONDS  seconds of fuzzing per target (default 60)
#   FUZZ_JOBS     build parallelism (default: nproc)
#   FUZZ_BUILD    build folder of the fuzz preset (default build-fuzz)
# First every committed seed, and the regression inputs generated here, run once at full size
# (a regression fails at once); then libFuzzer mutates the corpus for FUZZ_SECONDS. Working
# corpora: $FUZZ_BUILD/fuzz-corpus/TARGET; findings: $FUZZ_BUILD/fuzz-findings/TARGET/
# (crash-*, leak-*, timeout-*, oom-*); logs: $FUZZ_BUILD/fuzz-logs/TARGET.log. Exits 1 if any
# target found something. Reproduce a finding: $FUZZ_BUILD/fuzz/TARGET FILE
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"
build="${FUZZ_BUILD:-build-fuzz}"
all_targets=(fuzz_idx fuzz_model fuzz_checkpoint fuzz_image fuzz_predict_json)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")

# Largest input libFuzzer generates per target (seeds above it are cut when fuzzing, but run
# whole in the replay): room for the seeds, small enough to keep each run fast.
declare -A max_len=([fuzz_idx]=16384 [fuzz_model]=16384 [fuzz_checkpoint]=16384
                    [fuzz_image]=16384 [fuzz_predict_json]=8192)
declare -A dict=([fuzz_model]=fuzz/json.dict [fuzz_checkpoint]=fuzz/json.dict
                 [fuzz_predict_json]=fuzz/json.dict)

for t in "${targets[@]}"; do
  [ -n "${max_len[$t]:-}" ] || { echo "fuzz/run.sh: unknown target '$t' (${all_targets[*]})" >&2; exit 2; }
done

if [ "$build" = build-fuzz ]; then
  cmake --preset fuzz >/dev/null
else
  cmake --preset fuzz -B "$build" >/dev/null
fi
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

# 8-byte little-endian length, then the header: a model file without tensor data.
le64() {
  local n=$1 i out=""
  for i in 0 1 2 3 4 5 6 7; do out+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done
  printf '%b' "$out"
}
regressions="$build/fuzz-regressions"
mkdir -p "$regressions/fuzz_model" "$regressions/fuzz_checkpoint"
# The crash of the hardening issue: a shape nested 90,000 arrays deep (180 KB, not committed).
deep="$regressions/fuzz_model/regress_deep_90000"
open=$(head -c 90000 /dev/zero | tr '\0' '[')
close=$(head -c 90000 /dev/zero | tr '\0' ']')
header="{\"t\":{\"dtype\":\"F32\",\"shape\":${open}${close},\"data_offsets\":[0,0]}}"
{ le64 "${#header}"; printf '%s' "$header"; } >"$deep.tmp.$$"
mv "$deep.tmp.$$" "$deep"
cp "$deep" "$regressions/fuzz_checkpoint/regress_deep_90000.tmp.$$"
mv "$regressions/fuzz_checkpoint/regress_deep_90000.tmp.$$" "$regressions/fuzz_checkpoint/regress_deep_90000"

status=0
summary=()
for t in "${targets[@]}"; do
  exe="$build/fuzz/$t"
  corpus="$build/fuzz-corpus/$t"
  findings="$build/fuzz-findings/$t"
  log="$build/fuzz-logs/$t.log"
  rm -rf "$corpus" "$findings"
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  cp fuzz/corpus/"$t"/* "$corpus"/
  options=(-rss_limit_mb=2560 -timeout=30 -artifact_prefix="$findings/" -print_final_stats=1)
  [ -z "${dict[$t]:-}" ] || options+=(-dict="${dict[$t]}")

  seeds=(fuzz/corpus/"$t"/*)
  [ ! -d "$regressions/$t" ] || seeds+=("$regressions/$t"/*)
  echo "== $t: replaying ${#seeds[@]} seeds, then fuzzing for $seconds s (log: $log)"
  start=$(date +%s)
  found=""
  if ! "$exe" "${options[@]}" "${seeds[@]}" >"$log" 2>&1; then
    found="a seed fails"
  elif ! "$exe" "${options[@]}" -max_len="${max_len[$t]}" -max_total_time="$seconds" \
      "$corpus" >>"$log" 2>&1; then
    found="libFuzzer stopped on a finding"
  fi
  elapsed=$(($(date +%s) - start))
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  artifacts=$(find "$findings" -type f | wc -l)
  if [ -n "$found" ] && [ "$artifacts" -eq 0 ]; then artifacts=1; fi
  line="$t: ${runs:-0} runs in $elapsed s, $artifacts crashes"
  if [ -n "$found" ]; then
    status=1
    line+=" ($found: $(find "$findings" -type f | head -3 | tr '\n' ' ')see $log)"
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|terminate called' \
      "$log" | sed 's/^/   /' || true
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$status"
