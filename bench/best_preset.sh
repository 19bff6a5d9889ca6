#!/usr/bin/env bash
# Checks the `best` recipe against the issue's figures: at least 98.8% test accuracy on MNIST
# and 90.5% on Fashion-MNIST, each trained in at most 5 minutes of wall time. Takes minutes,
# so it is a benchmark (make bench-best), not part of the test suite.
#   BUILD_DIR (default build), NANOMLP_DATA (default ./data), THREADS (default all cores)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BUILD_DIR="${BUILD_DIR:-build}"
DATA="${NANOMLP_DATA:-data}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/bench}"
mkdir -p "$OUT_DIR"
cli="$BUILD_DIR/nanomlp"
[ -x "$cli" ] || { echo "best_preset.sh: $cli is missing: run make build" >&2; exit 1; }
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")

status=0
printf '| dataset | test accuracy | target | wall seconds (limit 300) | result |\n|---|---:|---:|---:|---|\n'
for spec in mnist:0.988 fashion-mnist:0.905; do
  dataset="${spec%%:*}"
  target="${spec##*:}"
  metrics="$OUT_DIR/best-$dataset.json"
  start=$(date +%s%N)
  "$cli" train --preset best --dataset "$dataset" --data "$DATA" "${threads[@]}" --quiet \
    --out "$OUT_DIR/best-$dataset.safetensors" --metrics-json "$metrics" >/dev/null
  wall=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  acc=$(sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p' "$metrics" | tail -1)
  verdict=$(awk -v a="$acc" -v t="$target" -v w="$wall" 'BEGIN { print (a >= t && w <= 300) ? "PASS" : "FAIL" }')
  [ "$verdict" = PASS ] || status=1
  awk -v d="$dataset" -v a="$acc" -v t="$target" -v w="$wall" -v v="$verdict" \
    'BEGIN { printf "| %s | %.2f%% | %.1f%% | %.0f | %s |\n", d, a * 100, t * 100, w, v }'
done
exit $status
