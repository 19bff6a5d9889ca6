#!/usr/bin/env bash
# Runs every nanomlp benchmark and prints one results table (Markdown), also saved with its
# JSON form and the raw records:
#   $OUT_DIR/results.md  $OUT_DIR/results.json  $OUT_DIR/raw.tsv  (+ logs of each part)
# `make bench` builds the release build and then runs this script; it builds nothing itself.
#
# Environment:
#   BUILD_DIR     the build folder to take the binaries from (default: build)
#   OUT_DIR       where the results go (default: $BUILD_DIR/bench)
#   NANOMLP_DATA  data root holding mnist/ (default: ./data)
#   PYTHON        the Python to use for the NumPy and PyTorch comparison (default: the first of
#                 python3 on PATH and /usr/bin/python3 that can import numpy)
#   BENCH_QUICK=1 fewer repetitions and epochs (a smoke test, not for reporting)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
BUILD_DIR="${BUILD_DIR:-build}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/bench}"
DATA="${NANOMLP_DATA:-data}"
QUICK="${BENCH_QUICK:-0}"
start_s=$(date +%s)

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

# --- what we need --------------------------------------------------------------------------
cli="$BUILD_DIR/nanomlp"
kernels_bin="$BUILD_DIR/bench/bench_kernels"
train_bin="$BUILD_DIR/bench/bench_train"
maxrss_bin="$BUILD_DIR/bench/nanomlp_maxrss"
for f in "$cli" "$kernels_bin" "$train_bin" "$maxrss_bin"; do
  [ -x "$f" ] || die "$f is missing: build first (make build, or cmake --build $BUILD_DIR)"
done
[ -d "$DATA/mnist" ] || die "no MNIST at $DATA/mnist: set NANOMLP_DATA or run: $cli download"
mkdir -p "$OUT_DIR"
raw="$OUT_DIR/raw.tsv"
: >"$raw"
kv() { printf 'kv\t%s\t%s\n' "$1" "$2" >>"$raw"; }

cores=$(nproc 2>/dev/null || echo 1)
load1() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }
kv run.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
kv run.build_dir "$BUILD_DIR"
kv run.data "$DATA"
# shellcheck source=/dev/null
kv run.os "$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}") || echo '?')"
kv run.kernel "$(uname -r)"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
if [ "$commit" != "?" ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit + local changes"
fi
kv run.commit "$commit"
kv run.load_start "$(load1)"
if [ "$(load1 | cut -d. -f1)" -ge "$cores" ] 2>/dev/null; then
  say "load average $(load1) on $cores cores: other work is running, figures will be noisy"
fi

if [ "$QUICK" = 1 ]; then
  gb_args=(--benchmark_min_time=0.02 --benchmark_repetitions=1)
  train_args=(--epochs 2 --large-seconds 1)
  py_epochs=1
else
  # Repetitions in random order spread bursts of other work over many benchmarks, instead of
  # spoiling all repetitions of one.
  gb_args=(--benchmark_min_time=0.05 --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
    --benchmark_enable_random_interleaving=true)
  train_args=(--epochs 5 --large-seconds 5)
  py_epochs=2
fi

# --- 1. kernels: sgemm at the step's shapes, element-wise kernels, one whole step ----------
say "1/5 kernels (Google Benchmark) -> $OUT_DIR/kernels.txt"
"$kernels_bin" "${gb_args[@]}" --lines="$OUT_DIR/kernels.tsv" \
  --benchmark_out="$OUT_DIR/kernels.json" --benchmark_out_format=json \
  >"$OUT_DIR/kernels.txt" 2>&1 || die "bench_kernels failed, see $OUT_DIR/kernels.txt"
cat "$OUT_DIR/kernels.tsv" >>"$raw"

# --- 2. training epochs, evaluation, data load through the library -------------------------
say "2/5 training, evaluation, data load (bench_train) -> $OUT_DIR/train.log"
"$train_bin" --data "$DATA" "${train_args[@]}" >>"$raw" 2>"$OUT_DIR/train.log" ||
  die "bench_train failed, see $OUT_DIR/train.log"
cat "$OUT_DIR/train.log" >&2

# --- 3. peak memory of a default `nanomlp train` -------------------------------------------
say "3/5 peak memory of a default 'nanomlp train' -> $OUT_DIR/cli-train.log"
metrics="$OUT_DIR/cli-train.json"
rm -f "$metrics" "$OUT_DIR/maxrss.txt"
if "$maxrss_bin" "$OUT_DIR/maxrss.txt" "$cli" train --data "$DATA" \
  --out "$OUT_DIR/model.safetensors" --metrics-json "$metrics" >"$OUT_DIR/cli-train.log" 2>&1; then
  kv cli.maxrss_kib "$(cat "$OUT_DIR/maxrss.txt")"
  # The metrics JSON is pretty-printed, one key per line: no JSON tool needed.
  kv cli.epoch_seconds "$(grep -o '"seconds": [0-9.eE+-]*' "$metrics" | awk '{print $2}' | sort -g |
    awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}')"
  for key in train_seconds load_seconds total_seconds; do
    kv "cli.$key" "$(grep -o "\"$key\": [0-9.eE+-]*" "$metrics" | tail -n1 | awk '{print $2}')"
  done
  kv cli.test_accuracy "$(grep -o '"test_accuracy": [0-9.eE+-]*' "$metrics" | tail -n1 | awk '{print $2}')"
else
  kv cli.error "nanomlp train failed, see $OUT_DIR/cli-train.log"
  say "nanomlp train failed, see $OUT_DIR/cli-train.log"
fi

# --- 4./5. the same training in NumPy and in PyTorch ---------------------------------------
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import numpy' 2>/dev/null; then
      python="$candidate"
      break
    fi
  done
fi
thread_counts="1"
[ "$cores" -gt 1 ] && thread_counts="1 $cores"
if [ -z "$python" ] || ! "$python" -c 'import numpy' 2>/dev/null; then
  say "4/5 NumPy: skipped: python3-numpy not installed"
  kv numpy.skipped "python3-numpy not installed"
else
  say "4/5 NumPy ($python, $py_epochs epochs on $thread_counts threads) -> $OUT_DIR/numpy.log"
  : >"$OUT_DIR/numpy.log"
  for t in $thread_counts; do
    if ! OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t timeout 300 "$python" bench/numpy_mlp.py \
      --data "$DATA" --epochs "$py_epochs" --prefix "numpy.t$t" >>"$raw" 2>>"$OUT_DIR/numpy.log"; then
      kv numpy.error "numpy_mlp.py failed on $t threads, see $OUT_DIR/numpy.log"
    fi
  done
  # The unprefixed records (version, accuracy, epochs) come from the last run.
  sed -n 's/^kv\tnumpy\.t[0-9]*\.\(version\|test_accuracy\|epochs\)\t/kv\tnumpy.\1\t/p' "$raw" >"$raw.tmp"
  cat "$raw.tmp" >>"$raw"
  rm -f "$raw.tmp"
fi
if [ -z "$python" ] || ! "$python" -c 'import torch' 2>/dev/null; then
  say "5/5 PyTorch: skipped: python3-torch not installed"
  kv torch.skipped "python3-torch not installed"
else
  say "5/5 PyTorch ($python, $py_epochs epochs on $thread_counts threads) -> $OUT_DIR/torch.log"
  kv torch.thread_counts "${thread_counts// /, }"
  if ! timeout 400 "$python" bench/torch_mlp.py --data "$DATA" --epochs "$py_epochs" \
    --threads "${thread_counts// /,}" >>"$raw" 2>"$OUT_DIR/torch.log"; then
    kv torch.error "torch_mlp.py failed, see $OUT_DIR/torch.log"
  fi
fi

# --- the table ------------------------------------------------------------------------------
kv run.load_end "$(load1)"
kv run.seconds "$(($(date +%s) - start_s))"
awk -F '\t' -v format=md -f bench/report.awk "$raw" >"$OUT_DIR/results.md"
awk -F '\t' -v format=json -f bench/report.awk "$raw" >"$OUT_DIR/results.json"
cat "$OUT_DIR/results.md"
say "saved $OUT_DIR/results.md, $OUT_DIR/results.json (raw records: $raw)"
